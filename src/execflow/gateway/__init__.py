"""The LP gateway (DESIGN §10): one FIX 4.4 session per LP, bridged to the pipeline.

``fixmap`` is the pure mapping; ``engine`` adapts QuickFIX; ``service`` runs a session on
the bus and the state store; ``quotes`` writes the LP's market data. Importing this
package loads no FIX engine: only ``engine`` and ``service`` do.
"""
