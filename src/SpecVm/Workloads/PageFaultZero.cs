using SpecVm.Mm;

namespace SpecVm.Workloads;

/// <summary>
/// page_fault_zero of Dave Hansen's will-it-scale fork (hansendc/will-it-scale, tests/page_fault_zero.c, "Anonymous
/// memory read fault"): page_fault1 with reads instead of writes. Each task loops map 128 MiB of private anonymous
/// memory, read one byte per 4 KiB page, unmap. One operation is one page read.
/// </summary>
/// <remarks>
/// On Linux each read fault maps the shared zero page (no allocation; the test's <c>MADV_NOHUGEPAGE</c> keeps it at
/// 4 KiB pages). So does the model by default (<see cref="AddressSpaceOptions.UseZeroPage"/>): the faults count as
/// <c>FaultAnonRead</c> and <c>FaultZeroPage</c>, allocate and zero nothing, and the unmap frees nothing but page tables;
/// what is left is the fault path's locking, the PTE table allocation and the shootdowns. With
/// <c>UseZeroPage = false</c> each read fault allocates and zeroes a frame, as page-fault1's writes do.
/// /// </remarks>
/// <param name="mappingBytes">Bytes mapped per round (default 128 MiB, as will-it-scale).</param>
/// <param name="mode">Threads (one address space) or processes.</param>
public sealed class PageFaultZero(long mappingBytes = PageFaultWorkload.DefaultMappingBytes, WorkloadMode mode = WorkloadMode.Threads)
    : PageFaultWorkload(MappingKind.Anonymous, mappingBytes, mode)
{
    /// <summary>0: the test has a name, not a number (<see cref="Name"/> is "page-fault-zero").</summary>
    protected override int Number => 0;

    /// <inheritdoc/>
    protected override bool ReadFaults => true;

    /// <inheritdoc/>
    public override string Name => WorkloadCatalog.ModeName("page-fault-zero", Mode);

    /// <inheritdoc/>
    public override string OperationUnit => "pages read";
}
