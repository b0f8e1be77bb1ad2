"""torch.distributed pieces for multi-GPU runs (issue 8): bucketed weight broadcast, FSDP2 sharding, the
collectives of a data-parallel trainer rank."""
