namespace SpecVm.Workloads;

/// <summary>What a fault must do to a page at the least, whatever its locks cost: zero it, or copy another page into it.</summary>
internal enum FloorKind
{
    /// <summary>An anonymous (or shared-file) write fault: a fresh page zeroed (Linux clear_user_highpage).</summary>
    Zero,

    /// <summary>A copy-on-write fault of a private file mapping: the page-cache page copied (Linux copy_user_highpage).</summary>
    Copy,
}

/// <summary>A workload's physical floor: what each of its faults does to memory, and how much memory each task walks.</summary>
/// <param name="Kind">Zero or copy.</param>
/// <param name="BytesPerThread">The task's working set (the fault workload's mapping per round; a copy reads and writes one each).</param>
internal readonly record struct FloorSpec(FloorKind Kind, long BytesPerThread)
{
    /// <summary>The name results record (FloorPoint.Kind in results): "zero" or "copy".</summary>
    public string Name => Kind == FloorKind.Zero ? "zero" : "copy";
}
