using System.Runtime.CompilerServices;
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

    /// <summary>
    /// Takes the mmap lock for read on behalf of <paramref name="cpu"/> (Linux <c>mmap_read_lock</c>): one fetch-add on
    /// the lock's count word when no writer holds or waits for it; otherwise spins, then sleeps (the CPU goes lazy for
    /// TLB shootdowns meanwhile), counting the wait in the CPU's counters and wait histogram. Release it with
    /// <see cref="MmapReadUnlock"/>.
    /// </summary>
    /// <remarks>
    /// A fault strategy holds it while it finds the VMA and handles the fault under it (<c>FaultCore.HandleStable</c>),
    /// and must not take it while it holds a VMA read lock (<see cref="Vma.TryReadLock(AddressSpace)"/>): a writer that
    /// holds the mmap lock waits for that VMA's readers. Never call it with interrupts disabled (it may sleep).
    /// </remarks>
    /// <param name="cpu">The CPU taking the lock, on its own thread.</param>
    /// <exception cref="ObjectDisposedException">The address space was disposed (the lock is not held then).</exception>
    public void MmapReadLock(Cpu cpu)
    {
        ArgumentNullException.ThrowIfNull(cpu);
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

    /// <summary>Releases the mmap lock taken by <see cref="MmapReadLock"/> (Linux <c>mmap_read_unlock</c>): one atomic on the count word.</summary>
    /// <exception cref="SynchronizationLockException">The lock is not held for read.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void MmapReadUnlock() => _mmapLock.ExitRead();

    /// <summary>
    /// Starts a speculative read of the whole address space (Linux <c>mmap_lock_speculate_try_begin</c>, the
    /// per-mm sequence of Michel Lespinasse's 2021 speculative faults): false while a writer holds the mmap lock;
    /// otherwise <paramref name="seq"/> is the sequence to pass to <see cref="MmapLockSpeculateRetry"/>. Anything read
    /// between the two (VMAs, page tables) is valid only if no mmap writer entered meanwhile, in any part of the
    /// address space.
    /// </summary>
    /// <param name="seq">The sequence (the per-VMA-lock sequence, <c>mm_lock_seq</c>, bumped by every writer that leaves).</param>
    /// <returns>True if no writer is inside.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool MmapLockSpeculateTryBegin(out int seq)
    {
        // Acquire: pairs with the release bump of the last writer to leave (WriteUnlock, DowngradeToRead), so everything
        // that writer changed (the VMA tree, the PTEs it zapped) is visible to the reads that follow, which cannot be
        // hoisted above this one.
        seq = Volatile.Read(ref _lockSeq.Value);
        VirtualTime.Access(_mmapLock, 0, LineAccess.Load);

        // Acquire read of the lock word after the count: a writer inside now changes what we are about to read.
        return !_mmapLock.IsWriteLocked;
    }

    /// <summary>
    /// Ends a speculative read begun by <see cref="MmapLockSpeculateTryBegin"/> (Linux <c>mmap_lock_speculate_retry</c>):
    /// true if an mmap writer is inside or has been since, so what was read must be discarded.
    /// </summary>
    /// <remarks>
    /// No fence of its own: a caller that must not let an earlier read pass the check (the final check before it
    /// publishes anything) makes it after a full fence, as a successful PTL trylock is.
    /// </remarks>
    /// <param name="seq">The sequence <see cref="MmapLockSpeculateTryBegin"/> returned.</param>
    /// <returns>True to retry or abort.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool MmapLockSpeculateRetry(int seq)
    {
        // The writer bit first, then the count, both acquire. A writer sets the bit (a CAS, a full fence) before its
        // first change and clears it (release) after bumping the count. If we see the bit clear because that writer
        // left, the acquire chain makes its bump visible to the count read below; in the other order, a writer could
        // bump and leave between our two reads and we would see the old count with the bit clear: a whole write
        // section missed.
        VirtualTime.Access(_mmapLock, 0, LineAccess.Load);
        return _mmapLock.IsWriteLocked || Volatile.Read(ref _lockSeq.Value) != seq;
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
