"""The pipeline: runner, dispatcher, seven workers, db writer, order intake."""
