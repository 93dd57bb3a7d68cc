using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Faults;

/// <summary>Why a speculative fault gave up (each is counted; see <see cref="CpuCounter"/>).</summary>
internal enum SpeculativeAbort
{
    /// <summary>No VMA at the address.</summary>
    VmaNotFound,

    /// <summary>The VMA's sequence count was odd.</summary>
    SeqOdd,

    /// <summary>The VMA's sequence count changed, or the VMA was detached.</summary>
    SeqChanged,

    /// <summary>A VMA or fault kind the speculative path does not handle (file-backed, write-protect).</summary>
    UnsupportedKind,

    /// <summary>A page-table level was missing.</summary>
    NoPageTable,

    /// <summary>The PTL trylock failed.</summary>
    PtlBusy,

    /// <summary>The PTE changed between the walk and the PTL.</summary>
    PteChanged,

    /// <summary>
    /// A transparent huge page: the PMD maps one, or is empty where the classic path would map one (the series leaves
    /// THP to the classic path: <c>pmd_trans_huge</c> and <c>pmd_none</c> go to <c>out_walk</c>).
    /// </summary>
    HugePage,
}

/// <summary>
/// The speculative page fault of Laurent Dufour's 2017 series (after Peter Zijlstra's 2010/2014 patches): no mmap lock.
/// </summary>
/// <remarks>
/// <para>
/// Under an SRCU read lock: look the VMA up locklessly; read its sequence count (odd: abort); check it is anonymous and
/// allows the access (an access error is a segmentation fault at once, once the count confirms the VMA was stable);
/// look at the PTE with interrupts off (a missing level aborts: the 2017 design never allocates tables speculatively;
/// a present PTE is done or a write-protect fault); prepare the zeroed frame (or pick the zero page) outside any lock;
/// disable interrupts and walk the page tables locklessly again; <em>try</em>-lock the PTL (busy: abort);
/// recheck the sequence count and the PTE under the PTL; install; unlock; enable interrupts. Any abort frees what it
/// took, counts its reason, and falls back to <see cref="MmapLockStrategy"/>.
/// </para>
/// <para>
/// Why trylock: the unmap path can hold the PTL while it waits for every CPU to acknowledge a TLB flush; a CPU
/// spinning for that PTL with interrupts disabled never acknowledges. <see cref="SpinOnPtl"/> replaces the trylock
/// with a spin to reproduce that deadlock on purpose (the hard-lockup watchdog then fires).
/// </para>
/// </remarks>
public sealed class SpeculativeStrategy : FaultStrategy
{
    /// <summary>Every outcome, once: the abort reasons are the <see cref="SpeculativeAbort"/> members, in order.</summary>
    private static readonly FaultOutcome[] AllOutcomes =
    [
        new("attempt", FaultOutcomeKind.Attempt, CpuCounter.SpecAttempts, "Faults that tried the speculative path."),
        new("success", FaultOutcomeKind.Success, CpuCounter.SpecSuccess, "Installed the page without the mmap lock."),
        new("abort: vma-not-found", FaultOutcomeKind.Abort, CpuCounter.SpecAbortVmaNotFound, "No VMA at the address (the classic path decides SIGSEGV)."),
        new("abort: seq-odd", FaultOutcomeKind.Abort, CpuCounter.SpecAbortSeqOdd, "The VMA's sequence count was odd: a writer inside."),
        new("abort: seq-changed", FaultOutcomeKind.Abort, CpuCounter.SpecAbortSeqChanged, "The VMA's sequence count changed, or the VMA was detached."),
        new("abort: unsupported-kind", FaultOutcomeKind.Abort, CpuCounter.SpecAbortUnsupported, "A file-backed VMA, or a write-protect fault."),
        new("abort: no-page-table", FaultOutcomeKind.Abort, CpuCounter.SpecAbortNoPageTable, "A page-table level was missing (never allocated speculatively)."),
        new("abort: ptl-busy", FaultOutcomeKind.Abort, CpuCounter.SpecAbortPtlBusy, "The PTL trylock failed."),
        new("abort: pte-changed", FaultOutcomeKind.Abort, CpuCounter.SpecAbortPteChanged, "The PTE changed between the walk and the PTL."),
        new("abort: huge-page", FaultOutcomeKind.Abort, CpuCounter.SpecAbortHugePage, "The PMD maps a 2 MiB page, or is empty where the classic path would map one: THP is never handled speculatively."),
        new("access-error", FaultOutcomeKind.Other, CpuCounter.SpecAccessError, "SIGSEGV decided on the speculative path (no fallback)."),
        new("fallback", FaultOutcomeKind.Fallback, CpuCounter.SpecFallbacks, "Attempts that fell back to the mmap lock."),
    ];

    private readonly MmapLockStrategy _fallback = new();

    /// <inheritdoc/>
    public override string Name => SpinOnPtl ? "speculative-spin" : "speculative";

    /// <inheritdoc/>
    public override IReadOnlyList<FaultOutcome> Outcomes => AllOutcomes;

    /// <summary>Spin on the PTL with interrupts disabled instead of trylock (reproduces the article's deadlock).</summary>
    public bool SpinOnPtl { get; init; }

    /// <summary>Planted bug for tests: skip the sequence-count recheck under the PTL.</summary>
    internal bool PlantSkipSeqRecheck { get; init; }

    /// <inheritdoc/>
    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        cpu.Count(CpuCounter.SpecAttempts);
        SpeculativeAbort abort;
        int idx = cpu.Machine.Srcu.ReadLock(cpu.Id);
        try
        {
            FaultResult? done = TrySpeculative(cpu, mm, address, write, out abort);
            if (done is FaultResult result)
            {
                return result;
            }
        }
        finally
        {
            cpu.Machine.Srcu.ReadUnlockLocal(cpu.Id, idx); // Locked and unlocked on this CPU's own thread.
        }

        cpu.Count(abort switch
        {
            SpeculativeAbort.VmaNotFound => CpuCounter.SpecAbortVmaNotFound,
            SpeculativeAbort.SeqOdd => CpuCounter.SpecAbortSeqOdd,
            SpeculativeAbort.SeqChanged => CpuCounter.SpecAbortSeqChanged,
            SpeculativeAbort.UnsupportedKind => CpuCounter.SpecAbortUnsupported,
            SpeculativeAbort.NoPageTable => CpuCounter.SpecAbortNoPageTable,
            SpeculativeAbort.PtlBusy => CpuCounter.SpecAbortPtlBusy,
            SpeculativeAbort.HugePage => CpuCounter.SpecAbortHugePage,
            _ => CpuCounter.SpecAbortPteChanged,
        });
        cpu.Count(CpuCounter.SpecFallbacks);
        return _fallback.HandleFault(cpu, mm, address, write);
    }

    /// <summary>
    /// Why a lockless walk that found no PTE table aborts: a huge page at the PMD, or an empty PMD (or a missing level
    /// above it) where the classic path would map a huge page, is <see cref="SpeculativeAbort.HugePage"/>; any other
    /// missing level is <see cref="SpeculativeAbort.NoPageTable"/>. Both went to the series' <c>out_walk</c>.
    /// </summary>
    private static SpeculativeAbort WalkAbort(AddressSpace mm, Vma vma, ulong address, bool write, bool huge) =>
        huge || (mm.TransparentHugePages != TransparentHugePageMode.Never
            && mm.WouldMapHugePage(new VmaInfo(vma.Start, vma.End, vma.Protection, vma.Kind, vma.File, vma.FilePageOffset), address, write))
            ? SpeculativeAbort.HugePage
            : SpeculativeAbort.NoPageTable;

    /// <summary>A fault that found its PTE present: done by another CPU, or a write-protect fault (abort).</summary>
    private static FaultResult? PresentPte(Cpu cpu, ulong pte, bool write, out SpeculativeAbort abort)
    {
        abort = SpeculativeAbort.UnsupportedKind;
        if (PteSlot.Permits(pte, write))
        {
            // Another CPU installed the page since the MMU's walk missed it: nothing to do but retry the access
            // (Linux's do_anonymous_page finds !pte_none under the PTL and returns, no fallback to mmap_sem).
            cpu.Count(CpuCounter.FaultRaced);
            return FaultResult.Handled;
        }

        // A present PTE that does not permit the access: write-protect faults (a write to the zero page included) are
        // not handled speculatively.
        return null;
    }

    /// <summary>The speculative attempt; null with <paramref name="abort"/> set when it must fall back.</summary>
    private FaultResult? TrySpeculative(Cpu cpu, AddressSpace mm, ulong address, bool write, out SpeculativeAbort abort)
    {
        abort = SpeculativeAbort.PteChanged;
        Vma? vma = mm.Vmas.Find(address);
        if (vma == null)
        {
            abort = SpeculativeAbort.VmaNotFound;
            return null;
        }

#if DEBUG
        if (cpu.Machine.Hooks.Fire(HookPoint.SpecAfterLookup, cpu) == HookAction.ForceAbort)
        {
            abort = SpeculativeAbort.SeqChanged;
            return null;
        }
#endif

        if (!vma.TryReadBegin(out int seq))
        {
            abort = SpeculativeAbort.SeqOdd;
            return null;
        }

#if DEBUG
        if (cpu.Machine.Hooks.Fire(HookPoint.SpecAfterSeqRead, cpu) == HookAction.ForceAbort)
        {
            abort = SpeculativeAbort.SeqChanged;
            return null;
        }
#endif

        // vma_has_changed(): detached, or (for a recycled VMA) no longer covering the address.
        if (vma.IsDetached || !vma.Contains(address))
        {
            abort = SpeculativeAbort.SeqChanged;
            return null;
        }

        if (vma.Kind != MappingKind.Anonymous)
        {
            abort = SpeculativeAbort.UnsupportedKind;
            return null;
        }

        if (!vma.Allows(write))
        {
            if (vma.ReadRetry(seq))
            {
                abort = SpeculativeAbort.SeqChanged;
                return null;
            }

            cpu.Count(CpuCounter.SpecAccessError);
            return FaultResult.SegmentationFault;
        }

        // Read the PTE before preparing anything, as the series' handle_speculative_fault does (it walks to the PTE with
        // interrupts off and only then calls do_anonymous_page): a missing table or a present PTE (done already, or a
        // write-protect fault, common once reads map the zero page) aborts or returns here, instead of allocating and
        // zeroing a frame only to free it. The walk below is redone: the tables may go once interrupts are back on.
        cpu.LocalIrqDisable();
        try
        {
            PteSlot peek = FaultCore.WalkLockless(cpu, mm, address);
            if (!peek.HasTable)
            {
                abort = WalkAbort(mm, vma, address, write, peek.IsHuge);
                return null;
            }

            ulong seen = peek.Read(); // Acquire (READ_ONCE of the PTE).
            if (PteSlot.IsPresent(seen))
            {
                return PresentPte(cpu, seen, write, out abort);
            }
        }
        finally
        {
            cpu.LocalIrqEnable();
        }

        // All work that does not depend on the VMA staying put happens before any lock: get and zero the frame, or
        // (a read with the zero page on) pick the shared zero page, which Install maps under the same PTL and
        // sequence-count rechecks as a fresh frame (the series' do_anonymous_page took pte_map_lock on both branches).
        FaultResult prepared = FaultCore.Prepare(cpu, mm, vma, address, write, out PreparedPage page);
        if (prepared != FaultResult.Handled)
        {
            abort = SpeculativeAbort.UnsupportedKind;
            return prepared == FaultResult.OutOfMemory ? FaultResult.OutOfMemory : null;
        }

        // Interrupts off for the lockless walk (as gup_fast): page-table pages are freed only after a shootdown that
        // this CPU must acknowledge, and it cannot while interrupts are off, so the tables we walk stay allocated.
        cpu.LocalIrqDisable();
        bool installed = false;
        try
        {
            PteSlot slot = FaultCore.WalkLockless(cpu, mm, address);
            if (!slot.HasTable)
            {
                abort = WalkAbort(mm, vma, address, write, slot.IsHuge);
                return null;
            }

            ulong pte = slot.Read(); // Acquire (READ_ONCE of the PTE).
            if (PteSlot.IsPresent(pte))
            {
                return PresentPte(cpu, pte, write, out abort); // Installed since our first look.
            }

#if DEBUG
            HookAction action = cpu.Machine.Hooks.Fire(HookPoint.SpecBeforePtlTryLock, cpu);
            if (action != HookAction.Continue)
            {
                abort = action == HookAction.FailTryLock ? SpeculativeAbort.PtlBusy : SpeculativeAbort.SeqChanged;
                return null;
            }
#endif
            if (SpinOnPtl)
            {
                slot.Lock(cpu); // The deadlock on purpose: a spin with interrupts off (the watchdog names the PTL).
            }
            else if (!slot.TryLock(cpu))
            {
                abort = SpeculativeAbort.PtlBusy;
                return null;
            }

            try
            {
#if DEBUG
                if (cpu.Machine.Hooks.Fire(HookPoint.SpecBeforeRecheck, cpu) == HookAction.ForceAbort)
                {
                    abort = SpeculativeAbort.SeqChanged;
                    return null;
                }
#endif

                // The recheck that makes it all safe: if a writer touched the VMA since we read the count, everything
                // we decided from it (kind, protection, range) may be wrong; unmap bumps the count before it zaps.
                // The PTL's successful CAS just above is a full fence after our reads of the VMA, which is the fence
                // Boehm's recheck needs; ReadRetryAfterFence does not issue a second one.
                if (!PlantSkipSeqRecheck && (vma.ReadRetryAfterFence(seq) || vma.IsDetached))
                {
                    abort = SpeculativeAbort.SeqChanged;
                    return null;
                }

                if (!FaultCore.Install(cpu, mm, ref page, slot, pte))
                {
                    abort = SpeculativeAbort.PteChanged;
                    return null;
                }

                installed = true;
            }
            finally
            {
                slot.Unlock(cpu);
            }
        }
        finally
        {
            cpu.LocalIrqEnable();
            if (!installed)
            {
                FaultCore.Abandon(cpu, mm, ref page);
            }
        }

        cpu.Count(CpuCounter.SpecSuccess);
        return FaultResult.Handled;
    }
}
