using SpecVm.Smp;
using SpecVm.Sync;

namespace SpecVm.Mm;

// AddressSpace, by operation: the mmap lock helpers and the VMA edit sequence every system call uses (mark, clone,
// publish, retire).
public sealed unsafe partial class AddressSpace
{
    // ---- locking helpers ----

    private void WriteLock(Cpu cpu)
    {
        if (!_mmapLock.TryEnterWrite())
        {
            long t0 = VirtualTime.Timestamp();
            _mmapLock.EnterWrite(cpu);
            long waited = Math.Max(1, VirtualTime.Timestamp() - t0);
            cpu.Count(CpuCounter.MmapWaitTicks, waited);
            WaitHistogram.Record(cpu, WaitKind.MmapWrite, waited);
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            // Acquire read: Dispose held the lock and freed everything while we waited for it.
            _mmapLock.ExitWrite();
            throw new ObjectDisposedException(nameof(AddressSpace));
        }

        cpu.Count(CpuCounter.MmapWriteAcquisitions);
        _writeStart = VirtualTime.Timestamp();
    }

    private void WriteUnlock(Cpu cpu)
    {
        cpu.Count(CpuCounter.MmapWriteHoldTicks, VirtualTime.Timestamp() - _writeStart);

        // Release (Linux vma_end_write_all): every VMA marked in this write section becomes read-lockable again,
        // at once, before the mmap lock itself is released.
        Volatile.Write(ref _lockSeq.Value, _lockSeq.Value + 1);
        _mmapLock.ExitWrite();
    }

    /// <summary>
    /// Turns this CPU's write hold into a read hold (Linux <c>mmap_write_downgrade</c>, which also ends every VMA write
    /// lock of the section: <c>vma_end_write_all</c>).
    /// </summary>
    private void DowngradeToRead(Cpu cpu)
    {
        cpu.Count(CpuCounter.MmapWriteHoldTicks, VirtualTime.Timestamp() - _writeStart);

        // Release (as WriteUnlock): every VMA marked in this write section becomes read-lockable again before readers
        // may enter; the detached ones are refused by their Detached flag, set before this.
        Volatile.Write(ref _lockSeq.Value, _lockSeq.Value + 1);
        _mmapLock.DowngradeWrite();
    }

    /// <summary>Takes the mmap lock for read on behalf of <paramref name="cpu"/>, counting waits.</summary>
    /// <param name="cpu">The CPU.</param>
    internal void ReadLockMm(Cpu cpu)
    {
        // down_read: one fetch-add on the fast path (no CAS loop first); the clock is read only if we waited.
        long waited = _mmapLock.EnterReadTimed(cpu);
        if (waited != 0)
        {
            cpu.Count(CpuCounter.MmapWaitTicks, waited);
            WaitHistogram.Record(cpu, WaitKind.MmapRead, waited);
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            // Acquire read: Dispose held the lock and freed everything while we waited for it.
            _mmapLock.ExitRead();
            throw new ObjectDisposedException(nameof(AddressSpace));
        }

        cpu.Count(CpuCounter.MmapReadAcquisitions);
    }

    private void BeginChange(Cpu cpu, Vma v)
    {
        // The sequence count goes odd before anything about the VMA or its pages changes: speculative readers
        // abort from here on. Then per-VMA-lock readers are fenced out and drained.
        VirtualTime.Access(v, Vma.LineSeq, LineAccess.Store);
        v.Seq.WriteBegin();
        v.WriteLock(_lockSeq.Value, cpu);
    }

    private void EndChangeAndRetire(Vma v)
    {
        v.File?.RemoveMapping();
        // Before the sequence count closes (MarkDetached's stores are releases): a reader that sees the final even count
        // also sees the VMA detached, so "count unchanged" can never be mistaken for "still in the tree".
        if (!v.IsDetached)
        {
            v.MarkDetached();
        }
        VirtualTime.Access(v, Vma.LineSeq, LineAccess.Store);
        v.Seq.WriteEnd();
        _slab.Retire(v);
    }

    private Vma Clone(Vma v, ulong start, ulong end, Protection protection)
    {
        Vma piece = _slab.Allocate();
        v.File?.AddMappingOfLive(); // The piece maps the file too; v still holds its own count, so the file is alive.
        long fileOffset = v.File == null ? 0 : v.FilePageOffset + (long)((start - v.Start) >> 12);
        piece.Initialize(this, start, end, protection, v.Kind, v.File, fileOffset);
        piece.InheritAnonVma(v); // Both halves of a split keep the anon_vma (Linux __split_vma: anon_vma_clone).
        return piece;
    }
}
