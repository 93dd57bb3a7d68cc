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
    private readonly MmapLockStrategy _fallback = new();

    /// <inheritdoc/>
    public override string Name => "per-vma-lock";

    /// <inheritdoc/>
    public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write)
    {
        ArgumentNullException.ThrowIfNull(cpu);
        ArgumentNullException.ThrowIfNull(mm);
        Vma? vma;
        int idx = cpu.Machine.Srcu.ReadLock(cpu.Id);
        try
        {
            vma = mm.Vmas.Find(address);
            if (vma == null)
            {
                cpu.Count(CpuCounter.VmaLockMiss);
                vma = null;
            }
#if DEBUG
            else if (cpu.Machine.Hooks.Fire(HookPoint.VmaLockAfterLookup, cpu) == HookAction.ForceAbort)
            {
                cpu.Count(CpuCounter.VmaLockAbort);
                vma = null;
            }
#endif
            else if (vma.Kind != MappingKind.Anonymous || !vma.TryReadLock(ref mm.LockSeq))
            {
                cpu.Count(CpuCounter.VmaLockAbort);
                vma = null;
            }
            // Acquire read after the read lock's full fence: a writer sets Detached before it drops the mmap lock, and a
            // VMA it detached in an earlier section is no longer the one covering the address.
            else if (Volatile.Read(ref vma.Detached) != 0 || !vma.Contains(address))
            {
                // Locked, but it is no longer the VMA we looked up (detached or recycled in between).
                vma.ReadUnlock();
                cpu.Count(CpuCounter.VmaLockAbort);
                vma = null;
            }
        }
        finally
        {
            cpu.Machine.Srcu.ReadUnlockLocal(cpu.Id, idx); // Locked and unlocked on this CPU's own thread.
        }

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
}
