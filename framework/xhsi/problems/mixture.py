"""The unmixing mixture Z = Σ_c s·â_c ⊙ S_c(θ_c) of ``[[components]]`` over the solver's
variables (amplitude blocks, then map blocks), and its gradients: shared by ``unmixing``,
``fusion_unmixing`` and the tabulated mixture of ``xhsi.problems.reduction``."""
from __future__ import annotations

from .components import ResolvedComponent


class Mixture:
    """Z = Σ_c s·â_c ⊙ S_c(θ_c) over the variables ``xs`` = [amplitude blocks..., map
    blocks...], and the gradients of f(Z) with respect to each variable."""

    def __init__(self, components: list[ResolvedComponent], n_amp: int, scale, shape, xp, dtype):
        self.components, self.n_amp, self.scale = components, n_amp, scale
        self.shape, self.xp, self.dtype = tuple(shape), xp, dtype

    def theta(self, comp: ResolvedComponent, xs):
        xp = self.xp
        ny, nx = self.shape[1:]
        rows = []
        for p in comp.model.parameters:
            if p.name in comp.slots:
                rows.append(xs[self.n_amp + comp.slots[p.name]])
            else:
                rows.append(xp.full((ny, nx), comp.constants[p.name], dtype=self.dtype))
        return xp.stack(rows, axis=0)

    def amplitude(self, comp: ResolvedComponent, xs):
        return xs[comp.amplitude_slot] if comp.amplitude_slot is not None else comp.amplitude_init

    def spectrum(self, comp: ResolvedComponent, xs):
        """S_c(θ_c) of one component at the variables ``xs``."""
        return comp.model.evaluate(self.theta(comp, xs))

    def spectra(self, xs) -> list:
        return [self.spectrum(comp, xs) for comp in self.components]

    def cube(self, xs, spectra=None):
        spectra = self.spectra(xs) if spectra is None else spectra
        z = None
        for comp, s in zip(self.components, spectra):
            term = (self.scale * self.amplitude(comp, xs))[None, :, :] * s
            z = term if z is None else z + term
        return z

    def component_cubes(self, xs) -> dict:
        return {comp.name: (self.scale * self.amplitude(comp, xs))[None, :, :] * s
                for comp, s in zip(self.components, self.spectra(xs))}

    def partial(self, i: int, xs, g_cube):
        """∂f/∂xs[i] given g_cube = ∂f/∂Z."""
        xp = self.xp
        if i < self.n_amp:
            comp = next(c for c in self.components if c.amplitude_slot == i)
            return self.scale * xp.sum(g_cube * self.spectrum(comp, xs), axis=0)
        slot = i - self.n_amp
        out = None
        for comp in self.components:
            names = [p.name for p in comp.model.parameters]
            rows = [k for k, name in enumerate(names) if comp.slots.get(name) == slot]
            if not rows:
                continue
            cot = (self.scale * self.amplitude(comp, xs))[None, :, :] * g_cube
            grads = comp.model.vjp(self.theta(comp, xs), cot)
            for k in rows:
                out = grads[k, ...] if out is None else out + grads[k, ...]
        return out
