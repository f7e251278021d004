"""The unmixing mixture Z = Σ_c s·â_c ⊙ S_c(θ_c) of ``[[components]]`` over the solver's
variables (amplitude blocks, then map blocks), and its gradients: shared by ``unmixing``,
``fusion_unmixing`` and the tabulated mixture of ``xhsi.problems.reduction``; and the data
term f(Z) over the observations with its block gradients (``DataFit``), shared by the run
and the bootstrap's replicates (``xhsi.problems.bootstrap``)."""
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


class DataFit:
    """f = Σ_k L_k(A_k Z + B_k) of the data terms ``terms`` (``xhsi.likelihoods.DataTerm``:
    likelihood, operator from the mixture's cube to the counts, counts, background) at the
    variables ``xs`` of ``mixture``, and its block gradients ∂f/∂xs[i] (PALM's ``value`` and
    ``Block.gradient``).

    What is known at a point (each term's expected counts; once asked for, the cost, each
    term's likelihood gradient and the cube gradient, the cost and the likelihood gradient
    from one pass) is kept for the last two points: PALM takes the cost at a point and then
    its block gradient there, the next block starts from the point the last accepted, and a
    rejected update returns to the point before. Arrays are never changed in place, and
    each point is held so that its ids stay its own."""

    def __init__(self, mixture: Mixture, terms: list):
        self.mixture, self.terms = mixture, terms
        self._kept: list[dict] = []  # newest first
        #: A curvature model over every block (``xhsi.problems.joint_metric``) for PALM's
        #: joint steps, or None.
        self.joint = None

    def _at(self, xs) -> dict:
        key = tuple(id(x) for x in xs)
        point = next((p for p in self._kept if p["key"] == key), None)
        if point is None:
            z = self.mixture.cube(xs)
            point = {"key": key, "xs": list(xs), "models": [t.model(z) for t in self.terms]}
        self._kept[:] = [point] + [p for p in self._kept if p is not point][:1]
        return point

    def _likelihood(self, xs) -> dict:
        point = self._at(xs)
        if "value" not in point:  # one pass gives both (the same bits as value_device)
            pairs = [t.likelihood.value_and_gradient(m, t.data) for t, m in zip(self.terms, point["models"])]
            point["value"] = sum(float(v) for v, _ in pairs)
            point["gradients"] = [g for _, g in pairs]
        return point

    def value(self, xs) -> float:
        return self._likelihood(xs)["value"]

    __call__ = value

    def cube_gradient(self, xs):
        """∂f/∂Z at ``xs``: Σ_k A_kᵀ ∇L_k."""
        point = self._likelihood(xs)
        if "cube_gradient" not in point:
            g = None
            for t, gl in zip(self.terms, point["gradients"]):
                gi = t.operator.adjoint(gl)
                g = gi if g is None else g + gi
            point["cube_gradient"] = g
        return point["cube_gradient"]

    def partial(self, i: int, xs):
        """∂f/∂xs[i]."""
        return self.mixture.partial(i, xs, self.cube_gradient(xs))

