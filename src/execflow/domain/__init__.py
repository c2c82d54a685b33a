"""The pure core: models, report normalisation, routing, transitions, money. No I/O."""
