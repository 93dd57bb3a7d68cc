using SpecVm.Mm;

namespace SpecVm.Workloads;

/// <summary>
/// page_fault4 of Dave Hansen's will-it-scale fork (hansendc/will-it-scale, tests/page_fault4.c, "Separate file
/// shared mapping read page fault"): each task loops map a shared mapping of its own file, read one byte per 4 KiB
/// page, unmap. One operation is one page read.
/// </summary>
/// <remarks>
/// The read-fault counterpart of page_fault3: after the first round every page is in the task's page cache, so a fault
/// only finds the page-cache page and maps it read-only (no frame allocated, no copy). Linux's <c>do_read_fault</c>
/// also maps up to 15 neighbouring cached pages at once (fault-around, <c>fault_around_bytes</c> 64 KiB); the model
/// has no fault-around and takes one fault per page, so its read-fault rate is a pessimistic bound on Linux's. A
/// version of page_fault4 proposed to Anton Blanchard's repository (Yin Fengwei) reads a private file mapping instead;
/// this is Hansen's.
/// </remarks>
/// <param name="mappingBytes">Bytes mapped per round (default 128 MiB, as will-it-scale).</param>
/// <param name="mode">Threads (one address space, as page_fault4_threads) or processes.</param>
public sealed class PageFault4(long mappingBytes = PageFaultWorkload.DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    : PageFaultWorkload(MappingKind.SharedFile, mappingBytes, mode)
{
    /// <inheritdoc/>
    protected override int Number => 4;

    /// <inheritdoc/>
    protected override bool ReadFaults => true;

    /// <inheritdoc/>
    public override string OperationUnit => "pages read";
}
