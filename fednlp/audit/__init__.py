"""Privacy audits of a saved run: membership inference, canary insertion, exposure and extraction."""
