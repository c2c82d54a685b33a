"""The platform API (DESIGN §10): FastAPI over the order intake and the read queries.

``create_app`` (``execflow.api.app``) builds the application from an ``ApiContext``;
``execflow run api`` and ``execflow serve`` run it under uvicorn.
"""
