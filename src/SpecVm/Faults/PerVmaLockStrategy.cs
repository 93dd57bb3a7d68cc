using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Faults;

/// <summary>
/// Per-VMA locks as merged in Linux 6.4 (Suren Baghdasaryan): look the VMA up locklessly under the read-side guard
/// (<c>lock_vma_under_rcu</c>), try to read-lock the VMA, validate, and handle the fault normally — interrupts on,
/// page tables allocated as needed — without the mmap lock.
/// </summary>
/// <remarks>
/// The read lock fails if a writer marked the VMA in its current write section (<c>vm_lock_seq == mm_lock_seq</c>);
/// releasing the mmap write lock bumps the address space's sequence and so unlocks every marked VMA at once. As in
/// 6.4, only anonymous VMAs are handled this way; others fall back. The mmap lock is never taken while a VMA is
/// read-locked. Every fault does an atomic on the VMA's reader count: the line Peter Zijlstra warned "gets very hot"
/// when every CPU faults into one giant VMA.
/// </remarks>
public sealed class PerVmaLockStrategy : FaultStrategy
{
    /// <summary>Every outcome, once (Linux's <c>VMA_LOCK_*</c> vmstat events).</summary>
    private static readonly FaultOutcome[] AllOutcomes =
    [
        new("success", FaultOutcomeKind.Success, CpuCounter.VmaLockSuccess, "Read-locked the VMA and completed (VMA_LOCK_SUCCESS)."),
        new("abort", FaultOutcomeKind.Abort, CpuCounter.VmaLockAbort, "Could not lock a suitable VMA: fell back to the mmap lock (VMA_LOCK_ABORT)."),
        new("retry", FaultOutcomeKind.Abort, CpuCounter.VmaLockRetry, "Locked, but the fault had to be retried under the mmap lock (VMA_LOCK_RETRY)."),
        new("miss", FaultOutcomeKind.Retry, CpuCounter.VmaLockMiss, "Locked a VMA that was replaced meanwhile: looked up again (VMA_LOCK_MISS)."),
    ];

    private readonly MmapLockStrategy _fallback = new();

    /// <inheritdoc/>
    public override string Name => "per-vma-lock";

    /// <inheritdoc/>
    public override IReadOnlyList<FaultOutcome> Outcomes => AllOutcomes;

    /// <inheritdoc/>
    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        Vma? vma = LockVmaUnderRcu(cpu, mm, address);
        if (vma == null)
        {
            return _fallback.HandleFault(cpu, mm, address, write);
        }

        FaultResult result;
        try
        {
            result = FaultCore.HandleStable(cpu, mm, vma, address, write);
        }
        finally
        {
            vma.ReadUnlock();
        }

        if (result == FaultResult.Retry)
        {
            cpu.Count(CpuCounter.VmaLockRetry);
            return _fallback.HandleFault(cpu, mm, address, write);
        }

        cpu.Count(CpuCounter.VmaLockSuccess);
        return result;
    }

    /// <summary>
    /// Linux's <c>lock_vma_under_rcu</c>: look the VMA up inside an SRCU section and read-lock it; null (counted as
    /// <see cref="CpuCounter.VmaLockAbort"/>) to fall back to the mmap lock. A VMA found detached after locking was
    /// replaced meanwhile: counted as <see cref="CpuCounter.VmaLockMiss"/> and looked up again, as Linux retries.
    /// </summary>
    private static Vma? LockVmaUnderRcu(Cpu cpu, AddressSpace mm, ulong address)
    {
        // A few retries at most: each one means a writer replaced the VMA between our lookup and our lock.
        for (int attempt = 0; attempt < MaxMissRetries; attempt++)
        {
            int idx = cpu.Machine.Srcu.ReadLock(cpu.Id);
            try
            {
                Vma? vma = mm.Vmas.Find(address);
                if (vma == null)
                {
                    break;
                }
#if DEBUG
                if (cpu.Machine.Hooks.Fire(HookPoint.VmaLockAfterLookup, cpu) == HookAction.ForceAbort)
                {
                    break;
                }
#endif
                if (vma.Kind != MappingKind.Anonymous || !vma.TryReadLock(ref mm.LockSeq))
                {
                    break;
                }

                // Acquire read after the read lock's full fence: a writer sets Detached before it drops the mmap lock.
                if (Volatile.Read(ref vma.Detached) != 0)
                {
                    vma.ReadUnlock();
                    cpu.Count(CpuCounter.VmaLockMiss);
                    continue; // Replaced by another VMA: look again.
                }

                if (!vma.Contains(address))
                {
                    vma.ReadUnlock(); // Locked, but it is no longer the VMA covering the address (recycled in between).
                    break;
                }

                return vma;
            }
            finally
            {
                cpu.Machine.Srcu.ReadUnlockLocal(cpu.Id, idx); // Locked and unlocked on this CPU's own thread.
            }
        }

        cpu.Count(CpuCounter.VmaLockAbort);
        return null;
    }

    /// <summary>How many times a lookup whose VMA was replaced is retried before falling back.</summary>
    private const int MaxMissRetries = 4;
}
