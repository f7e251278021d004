"""Built-in solvers plugin: ISTA, FISTA and PALM/iPALM (``xhsi.solvers``)."""
from xhsi import hookimpl
from xhsi.solvers import FISTA, ISTA, PALM


@hookimpl
def xhsi_register_solvers():
    return [ISTA, FISTA, PALM]
