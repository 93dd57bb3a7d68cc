using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Faults;

/// <summary>
/// The speculative page fault of Michel Lespinasse's 2021 series ("Speculative page faults (anon vmas only)", v1 April
/// 2021): no mmap lock and no per-VMA sequence count, but one sequence for the whole address space (<c>mmap_seq</c>),
/// which every mmap-lock writer makes odd when it takes the lock and even again when it lets go.
/// </summary>
/// <remarks>
/// <para>
/// The fault samples the sequence (odd: a writer is inside, abort), looks the VMA up under RCU (the model's SRCU) and
/// copies it, checks the sequence again (the copy may be torn otherwise), checks the copy is anonymous and allows the
/// access, prepares the zeroed frame outside any lock, disables interrupts and walks the page tables locklessly (a
/// missing level aborts: tables are never allocated speculatively), checks the sequence before and then again after
/// <em>try</em>-locking the PTL, and installs the PTE. Any abort frees what it took, counts its reason and falls back
/// to <see cref="MmapLockStrategy"/>. The price of one sequence for the whole mm: any mmap write anywhere — a map of an
/// unrelated region included — aborts every speculative fault in flight, where Dufour's per-VMA count
/// (<see cref="SpeculativeStrategy"/>) aborts only faults in the VMA being changed.
/// </para>
/// <para>
/// The model's mm sequence is two words it already has, read as one seqcount: the per-VMA-lock sequence
/// (<c>AddressSpace.LockSeq</c>, Linux <c>mm_lock_seq</c>), which every writer bumps when it releases (or downgrades)
/// the mmap lock, and the mmap lock's writer bit, set while a writer holds it. "Even" is "writer bit clear", and
/// "unchanged" is "same count, writer bit still clear": a writer's whole section lies between its setting of the bit
/// and its bump of the count, so no section can begin and end unseen between two reads. (Linux 6.14 made
/// <c>mm_lock_seq</c> such a seqcount itself, odd while the lock is held for write.) The recheck reads the bit first
/// and the count second; see <see cref="AddressSpace.MmapLockSpeculateRetry"/>. The strategy reads both through
/// <see cref="AddressSpace.MmapLockSpeculateTryBegin"/> and <see cref="AddressSpace.MmapLockSpeculateRetry"/>, today's
/// Linux names for the same check (<c>mmap_seq_read_start</c> and <c>mmap_seq_read_check</c> in the series).
/// </para>
/// <para>
/// Two differences from the series, both conservative: the VMA is copied into locals for the checks (as
/// <c>pvma = *vma</c>), but the SRCU section stays open until the PTE is installed and the frame is prepared from the
/// VMA itself, which cannot be freed meanwhile; every field read is validated by the same final recheck. And
/// write-protect faults (a present PTE) are left to the classic path.
/// </para>
/// <para>
/// Virtual time: the sequence's line is modelled as the mmap lock's count line, the line a writer writes when it takes
/// and releases the lock, which is when <c>mmap_seq</c> changes (the count line is also written by every read locker,
/// which <c>mmap_seq</c>'s line would not be: the model overstates its misses when other faults take the mmap lock).
/// </para>
/// </remarks>
public sealed class SpeculativeMmSeqStrategy : FaultStrategy
{
    private const string StrategyName = "speculative-mmseq";

    // The strategy's own vocabulary: per-CPU counters registered once per process (no CpuCounter member needed), named
    // after Lespinasse's CONFIG_SPECULATIVE_PAGE_FAULT_STATS events.
    private static readonly RegisteredCounter AttemptCount = Register("attempt");
    private static readonly RegisteredCounter SuccessCount = Register("success");
    private static readonly RegisteredCounter AbortOdd = Register("abort: odd");
    private static readonly RegisteredCounter AbortUnmapped = Register("abort: unmapped");
    private static readonly RegisteredCounter AbortNoSpeculate = Register("abort: no-speculate");
    private static readonly RegisteredCounter AbortVmaCopy = Register("abort: vma-copy");
    private static readonly RegisteredCounter AbortAccessError = Register("abort: access-error");
    private static readonly RegisteredCounter AbortNoPageTable = Register("abort: no-page-table");
    private static readonly RegisteredCounter AbortFault = Register("abort: fault");
    private static readonly RegisteredCounter AbortSeq1 = Register("abort: seq1");
    private static readonly RegisteredCounter AbortPtl = Register("abort: ptl");
    private static readonly RegisteredCounter AbortSeq2 = Register("abort: seq2");
    private static readonly RegisteredCounter AbortHugePage = Register("abort: huge-page");
    private static readonly RegisteredCounter FallbackCount = Register("fallback");

    private static readonly FaultOutcome[] AllOutcomes =
    [
        new("attempt", FaultOutcomeKind.Attempt, AttemptCount, "Faults that tried the speculative path (SPF_ATTEMPT)."),
        new("success", FaultOutcomeKind.Success, SuccessCount, "Installed the page without the mmap lock."),
        new("abort: odd", FaultOutcomeKind.Abort, AbortOdd, "The mm sequence was odd at the start: a writer held the mmap lock (SPF_ABORT_ODD)."),
        new("abort: unmapped", FaultOutcomeKind.Abort, AbortUnmapped, "No VMA at the address (SPF_ABORT_UNMAPPED); the classic path decides SIGSEGV."),
        new("abort: no-speculate", FaultOutcomeKind.Abort, AbortNoSpeculate, "Not an anonymous VMA (SPF_ABORT_NO_SPECULATE)."),
        new("abort: vma-copy", FaultOutcomeKind.Abort, AbortVmaCopy, "The mm sequence moved while the VMA was copied (SPF_ABORT_VMA_COPY)."),
        new("abort: access-error", FaultOutcomeKind.Abort, AbortAccessError, "The VMA forbids the access (SPF_ABORT_ACCESS_ERROR); the classic path decides SIGSEGV."),
        new("abort: no-page-table", FaultOutcomeKind.Abort, AbortNoPageTable, "A page-table level was missing: never allocated speculatively (SPF_ABORT_PUD, SPF_ABORT_PMD)."),
        new("abort: fault", FaultOutcomeKind.Abort, AbortFault, "A present PTE that forbids the access: a write-protect fault, left to the classic path (SPF_ABORT_FAULT)."),
        new("abort: seq1", FaultOutcomeKind.Abort, AbortSeq1, "The mm sequence moved before the PTL was tried: an mmap write anywhere in the mm (SPF_ABORT_PTE_MAP_LOCK_SEQ1)."),
        new("abort: ptl", FaultOutcomeKind.Abort, AbortPtl, "The PTL trylock failed (SPF_ABORT_PTE_MAP_LOCK_PTL)."),
        new("abort: seq2", FaultOutcomeKind.Abort, AbortSeq2, "The mm sequence moved, checked under the PTL: an mmap write anywhere in the mm (SPF_ABORT_PTE_MAP_LOCK_SEQ2)."),
        new("abort: huge-page", FaultOutcomeKind.Abort, AbortHugePage, "The PMD maps a 2 MiB page, or is empty where the classic path would map one: \"we do not handle huge pages\" (SPF_ABORT_PMD)."),
        new("fallback", FaultOutcomeKind.Fallback, FallbackCount, "Attempts that fell back to the mmap lock (SPF_ABORT)."),
    ];

    private readonly MmapLockStrategy _fallback = new();

    /// <inheritdoc/>
    public override string Name => StrategyName;

    /// <inheritdoc/>
    public override IReadOnlyList<FaultOutcome> Outcomes => AllOutcomes;

    /// <summary>Planted bug for tests: skip the mm-sequence checks before and under the PTL (seq1 and seq2).</summary>
    internal bool PlantSkipSeqRecheck { get; init; }

    /// <inheritdoc/>
    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        cpu.Count(AttemptCount);
        RegisteredCounter abort;
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

        cpu.Count(abort);
        cpu.Count(FallbackCount);
        return _fallback.HandleFault(cpu, mm, address, write);
    }

    /// <summary>The speculative attempt; null with <paramref name="abort"/> set when it must fall back.</summary>
    private FaultResult? TrySpeculative(Cpu cpu, AddressSpace mm, ulong address, bool write, out RegisteredCounter abort)
    {
        abort = AbortFault;
        if (!mm.MmapLockSpeculateTryBegin(out int seq))
        {
            abort = AbortOdd; // A writer is changing the mm now: whatever we read could be half-done.
            return null;
        }

        Vma? vma = mm.Vmas.Find(address);
#if DEBUG
        if (cpu.Machine.Hooks.Fire(HookPoint.SpecAfterLookup, cpu) == HookAction.ForceAbort)
        {
            abort = AbortVmaCopy;
            return null;
        }
#endif
        if (vma == null || !vma.Contains(address))
        {
            abort = AbortUnmapped;
            return null;
        }

        if (vma.Kind != MappingKind.Anonymous)
        {
            abort = AbortNoSpeculate; // "anon vmas only": file faults need the page cache under the mmap lock here.
            return null;
        }

        // pvma = *vma: the fields every later decision uses, then the sequence again. No fence before the recheck: it
        // is an early abort only; a copy torn by a writer that this check misses is caught by the recheck under the
        // PTL, after the trylock's full fence, before anything is installed.
        var copy = new VmaInfo(vma.Start, vma.End, vma.Protection, vma.Kind, vma.File, vma.FilePageOffset);
        if (mm.MmapLockSpeculateRetry(seq))
        {
            abort = AbortVmaCopy;
            return null;
        }

#if DEBUG
        if (cpu.Machine.Hooks.Fire(HookPoint.SpecAfterSeqRead, cpu) == HookAction.ForceAbort)
        {
            abort = AbortVmaCopy;
            return null;
        }
#endif

        if (!Allows(copy.Protection, write))
        {
            abort = AbortAccessError; // The series falls back here too: SIGSEGV is the classic path's to decide.
            return null;
        }

        // With huge pages on, look at the PMD before preparing a 4 KiB page: the series' __handle_mm_fault walks to the
        // PMD before do_anonymous_page allocates, and gives up (spf_fail) on a huge PMD or an empty one, which is where
        // the classic path would map a huge page. Off, nothing changes: no PMD is ever huge, and an empty one aborts at
        // the walk below as before.
        if (mm.TransparentHugePages != TransparentHugePageMode.Never && HugePmd(cpu, mm, copy, address, write))
        {
            abort = AbortHugePage;
            return null;
        }

        // All work that does not depend on the VMA staying put happens before any lock: get and zero the frame.
        FaultResult prepared = FaultCore.Prepare(cpu, vma, address, write, out PreparedPage page);
        if (prepared != FaultResult.Handled)
        {
            abort = AbortNoSpeculate;
            return prepared == FaultResult.OutOfMemory ? FaultResult.OutOfMemory : null;
        }

        // Interrupts off for the lockless walk (speculative_page_walk_begin, as gup_fast): page-table pages are freed
        // only after a shootdown that this CPU must acknowledge, and it cannot while interrupts are off, so the tables
        // we walk stay allocated even if a writer detached them after our sequence read.
        cpu.LocalIrqDisable();
        bool installed = false;
        try
        {
            PteSlot slot = FaultCore.WalkLockless(cpu, mm, address);
            if (!slot.HasTable)
            {
                abort = slot.IsHuge ? AbortHugePage : AbortNoPageTable;
                return null;
            }

            // Acquire (READ_ONCE of the PTE): the frame state of whatever it maps is visible.
            ulong pte = slot.Read();
            if (PteSlot.IsPresent(pte))
            {
                if (PteSlot.Permits(pte, write))
                {
                    // Another CPU installed the page since our walk missed it: retry the access (do_anonymous_page
                    // finds !pte_none under the PTL and returns; no fallback).
                    cpu.Count(CpuCounter.FaultRaced);
                    return FaultResult.Handled;
                }

                abort = AbortFault;
                return null;
            }

            // pte_map_lock's first check: a writer since the start means the walk may have gone through tables it is
            // tearing down; give up before contending for the PTL (no fence: early abort only, as above).
            if (!PlantSkipSeqRecheck && mm.MmapLockSpeculateRetry(seq))
            {
                abort = AbortSeq1;
                return null;
            }

#if DEBUG
            HookAction action = cpu.Machine.Hooks.Fire(HookPoint.SpecBeforePtlTryLock, cpu);
            if (action != HookAction.Continue)
            {
                abort = action == HookAction.FailTryLock ? AbortPtl : AbortSeq1;
                return null;
            }
#endif

            // Trylock, never spin: an unmapper may hold this PTL while it waits for our TLB acknowledgement, which we
            // cannot give with interrupts off (SpeculativeStrategy.SpinOnPtl shows the deadlock a spin would cause).
            if (!slot.TryLock(cpu))
            {
                abort = AbortPtl;
                return null;
            }

            try
            {
#if DEBUG
                if (cpu.Machine.Hooks.Fire(HookPoint.SpecBeforeRecheck, cpu) == HookAction.ForceAbort)
                {
                    abort = AbortSeq2;
                    return null;
                }
#endif

                // The check that makes it all safe: no mmap writer since the start, so the VMA copy, the walk and the
                // prepared page are all still right, and a writer that comes now must take this PTL to zap the PTE we
                // install. The trylock's successful CAS just above is a full fence after our reads of the VMA and the
                // tables (the smp_rmb of mmap_seq_read_check): none of them can be satisfied after this recheck.
                if (!PlantSkipSeqRecheck && mm.MmapLockSpeculateRetry(seq))
                {
                    abort = AbortSeq2;
                    return null;
                }

                if (!FaultCore.Install(cpu, mm, ref page, slot, pte))
                {
                    // Another CPU installed a page since our walk: the fault is done (do_anonymous_page's !pte_none).
                    cpu.Count(CpuCounter.FaultRaced);
                    return FaultResult.Handled;
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

        cpu.Count(SuccessCount);
        return FaultResult.Handled;
    }

    /// <summary>
    /// True if the PMD of <paramref name="address"/> maps a huge page, or is empty (or a level above it is missing) where
    /// the classic path would map one for this fault (<paramref name="copy"/> is the VMA as sampled). Walked with
    /// interrupts off, as every speculative walk.
    /// </summary>
    private static bool HugePmd(Cpu cpu, AddressSpace mm, in VmaInfo copy, ulong address, bool write)
    {
        cpu.LocalIrqDisable();
        try
        {
            PteSlot slot = FaultCore.WalkLockless(cpu, mm, address);
            return slot.IsHuge || (!slot.HasTable && mm.WouldMapHugePage(copy, address, write));
        }
        finally
        {
            cpu.LocalIrqEnable();
        }
    }

    /// <summary>As <see cref="Vma.Allows"/>, on the copy: write needs write, any right allows a read.</summary>
    private static bool Allows(Protection p, bool write) => write ? (p & Protection.Write) != 0 : p != Protection.None;

    private static RegisteredCounter Register(string outcome) => RegisteredCounter.Register(StrategyName + "/" + outcome);
}
