using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Faults;

/// <summary>
/// Per-VMA locks as merged in Linux 6.4 (Suren Baghdasaryan) and widened since: look the VMA up locklessly under the
/// read-side guard (<c>lock_vma_under_rcu</c>), try to read-lock the VMA, validate, and handle the fault — interrupts
/// on, page tables allocated as needed — without the mmap lock.
/// </summary>
/// <remarks>
/// <para>
/// The read lock fails if a writer marked the VMA in its current write section (<c>vm_lock_seq == mm_lock_seq</c>) or
/// detached it; releasing the mmap write lock bumps the address space's sequence and so unlocks every marked VMA at
/// once. Which faults run under the VMA lock depends on the kernel version modelled,
/// <see cref="AddressSpaceOptions.PerVmaLockScope"/>: a VMA the lookup refuses is counted
/// <see cref="CpuCounter.VmaLockAbort"/>; a fault that locked its VMA and then needs the mmap lock (Linux
/// <c>VM_FAULT_RETRY</c>) is counted <see cref="CpuCounter.VmaLockRetry"/>; both are then handled under the mmap lock,
/// which also gives the VMA the <c>anon_vma</c> later per-VMA-lock faults need. The mmap lock is never taken while a
/// VMA is read-locked. Every fault does an atomic on the VMA's reader count: the line Peter Zijlstra warned "gets very
/// hot" when every CPU faults into one giant VMA.
/// </para>
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
            result = FaultCore.HandleUnderVmaLock(cpu, mm, vma, address, write);
        }
        finally
        {
            vma.ReadUnlock();
        }

        if (result == FaultResult.Retry)
        {
            // do_user_addr_fault: VM_FAULT_RETRY counts VMA_LOCK_RETRY and takes the mmap lock.
            cpu.Count(CpuCounter.VmaLockRetry);
            return _fallback.HandleFault(cpu, mm, address, write);
        }

        cpu.Count(CpuCounter.VmaLockSuccess);
        return result;
    }

    /// <summary>
    /// Linux's <c>lock_vma_under_rcu</c>: look the VMA up inside an SRCU section and read-lock it; null (counted as
    /// <see cref="CpuCounter.VmaLockAbort"/>) to fall back to the mmap lock. A VMA found detached was replaced meanwhile:
    /// counted as <see cref="CpuCounter.VmaLockMiss"/> and looked up again, as Linux retries.
    /// </summary>
    private static Vma? LockVmaUnderRcu(Cpu cpu, AddressSpace mm, ulong address)
    {
        PerVmaLockScope scope = mm.VmaLockScope;

        // A few retries at most: each one means a writer replaced the VMA between our lookup and our lock.
        for (int attempt = 0; attempt < MaxMissRetries; attempt++)
        {
            // A read section without a fence, as lock_vma_under_rcu's rcu_read_lock() has none: the per-VMA path runs on
            // every fault, grace periods come only when VMAs are retired, so the ordering is paid there (a process-wide
            // barrier; Srcu.ReadLockLite explains why that is enough). The VMA's reader-count CAS below is a full fence
            // of its own, so only the lookup itself runs unfenced, which is exactly the case the grace period covers.
            int idx = cpu.Machine.Srcu.ReadLockLite(cpu.Id);
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

                // 6.4–6.5: "Only anonymous vmas are supported for now" (checked before locking).
                if (scope == PerVmaLockScope.AnonymousOnly && vma.Kind != MappingKind.Anonymous)
                {
                    break;
                }

                VmaReadLockResult locked = vma.TryReadLock(mm);
                if (locked == VmaReadLockResult.Detached)
                {
                    cpu.Count(CpuCounter.VmaLockMiss);
                    continue; // Replaced by another VMA (6.15's -EAGAIN from vma_start_read): look again.
                }

                if (locked != VmaReadLockResult.Locked)
                {
                    break; // Write-locked by the current write section.
                }

                // Before 6.10, an anonymous VMA without an anon_vma is refused after locking (6.5 moved the check
                // after vma_start_read so that a concurrent mremap cannot take the anon_vma away in between); 6.10+
                // checks where a fault needs one (vmf_anon_prepare), so a zero-page read proceeds.
                if (scope < PerVmaLockScope.Full && vma.Kind == MappingKind.Anonymous && !vma.HasAnonVma)
                {
                    vma.ReadUnlock();
                    break;
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
