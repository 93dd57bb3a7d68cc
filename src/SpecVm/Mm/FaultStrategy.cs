using SpecVm.Smp;

namespace SpecVm.Mm;

/// <summary>What a fault handler achieved.</summary>
public enum FaultResult
{
    /// <summary>The translation is installed (or another CPU installed it): retry the access.</summary>
    Handled = 0,

    /// <summary>Nothing was installed but the access should be retried (Linux <c>VM_FAULT_RETRY</c>).</summary>
    Retry = 1,

    /// <summary>No VMA, or the VMA forbids the access: the access fails with a segmentation fault.</summary>
    SegmentationFault = 2,

    /// <summary>No free frame (Linux <c>VM_FAULT_OOM</c>).</summary>
    OutOfMemory = 3,
}

/// <summary>
/// The seam every page-fault strategy plugs into: one method, called by the MMU when a walk finds no usable
/// translation. A strategy decides which locks protect the VMA lookup and the page-table update; the shared work
/// (preparing frames, installing PTEs, copy-on-write) lives in <c>SpecVm.Faults.FaultCore</c>, so a new strategy is one
/// file. The seam lives here, beside <see cref="AddressSpace"/>, which calls it without knowing any strategy; the
/// strategies live in <c>SpecVm.Faults</c>, which depends on this namespace and never the other way round.
/// </summary>
public abstract class FaultStrategy
{
    /// <summary>A short name for reports ("mmap-lock", "speculative", "per-vma-lock").</summary>
    public abstract string Name { get; }

    /// <summary>
    /// The outcomes this strategy counts, in the order reports should list them (none by default). The harness reads
    /// each one's counter after a run and the reports print whatever is declared here, so a strategy's vocabulary
    /// (its abort reasons, say) is written once, beside the code that counts it. Return the same list on every call
    /// (a <c>static readonly</c> array): it is read per run, never per fault.
    /// </summary>
    public virtual IReadOnlyList<FaultOutcome> Outcomes => [];

    /// <summary>Handles a fault at <paramref name="address"/> on <paramref name="cpu"/> (interrupts enabled on entry and exit).</summary>
    /// <param name="cpu">The faulting CPU.</param>
    /// <param name="mm">The address space.</param>
    /// <param name="address">The faulting address (canonical user address).</param>
    /// <param name="write">True for a write access.</param>
    public abstract FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write);

    /// <inheritdoc/>
    public override string ToString() => Name;
}
