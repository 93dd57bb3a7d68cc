// Stress and scaling tests assume they own the machine's cores (2 on CI): run test classes one at a time, so that a
// bounded test is bounded by its own work, not by whatever else xunit would run beside it.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
