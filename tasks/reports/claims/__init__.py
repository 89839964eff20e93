"""The paper's four claims, one module each: ``section(runs)`` builds its part of the evidence report."""
