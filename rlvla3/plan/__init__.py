"""`rlvla3 plan`: a discrete-event model of the pipeline, fed by measured stage costs (docs/scaling.md)."""
