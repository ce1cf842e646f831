"""Studies that scenarios run: each module defines CONSTRAINTS and run(config, ctx)."""
