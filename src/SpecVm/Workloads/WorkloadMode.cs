namespace SpecVm.Workloads;

/// <summary>How tasks share address spaces (will-it-scale's <c>_threads</c> and <c>_processes</c> builds).</summary>
public enum WorkloadMode
{
    /// <summary>All tasks share one address space (threads of one process).</summary>
    Threads,

    /// <summary>Each task has its own address space (separate processes).</summary>
    Processes,
}
