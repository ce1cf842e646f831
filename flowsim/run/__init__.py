"""The run store and the CLI's support: what studies use to declare configs and record results.

A study module (``analysis/<name>.py``, installed as ``flowsim.studies.<name>``)::

    from pydantic import Field
    from flowsim.run import RunContext, Section, StudyConfig

    class Config(StudyConfig):          # every key, its default, type and range, once
        dt: float = Field(0.1, gt=0)
        steps: int = Field(150, ge=1)

    def run(config: Config, ctx: RunContext) -> dict: ...

Scenario loading, config resolution, the registry of rules and the run
lifecycle live in the submodules (``scenario``, ``config``, ``registry``,
``runner``) that the CLI uses. The engine never imports this package.
"""

from flowsim.run.config import BadInput, Section, StudyConfig
from flowsim.run.store import RunContext

__all__ = ["BadInput", "Section", "StudyConfig", "RunContext"]
