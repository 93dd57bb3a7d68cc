using SpecVm.Mm;
using SpecVm.Sync;

namespace SpecVm.Tests.Mm;

/// <summary>
/// <see cref="Vma.TryReadLock"/> as Linux's <c>vma_start_read</c>: a CAS loop on the reader word that refuses a
/// detached VMA, and a check of the writer's mark before and after.
/// </summary>
public sealed class VmaReadLockTests
{
    [Fact]
    public void TryReadLockRefusesAWriteLockedVma()
    {
        using var srcu = new Srcu(1);
        var vma = new Vma(new VmaSlab(srcu, poison: false));
        int mmLockSeq = 7;
        vma.WriteLock(mmLockSeq, waiter: null); // Marked in write section 7.
        Assert.Equal(VmaReadLockResult.WriteLocked, vma.TryReadLock(ref mmLockSeq));
        Assert.Equal(0, vma.ReaderCount & Vma.ReaderMask);

        mmLockSeq++; // The write section ends (mmap_write_unlock: vma_end_write_all).
        Assert.Equal(VmaReadLockResult.Locked, vma.TryReadLock(ref mmLockSeq));
        Assert.Equal(1, vma.ReaderCount & Vma.ReaderMask);
        vma.ReadUnlock();
        Assert.Equal(0, vma.ReaderCount);
    }

    [Fact]
    public void TryReadLockRefusesADetachedVmaAndTakesNoCount()
    {
        using var srcu = new Srcu(1);
        var vma = new Vma(new VmaSlab(srcu, poison: false));
        int mmLockSeq = 0;
        vma.MarkDetached();
        Assert.Equal(VmaReadLockResult.Detached, vma.TryReadLock(ref mmLockSeq));
        Assert.Equal(Vma.ReaderDetached, vma.ReaderCount); // The bit alone: no reader count was taken.
        Assert.True(vma.IsDetached);
    }

    [Fact]
    public void ConcurrentReadersOnTwoThreadsAreCountedExactly()
    {
        using var srcu = new Srcu(2);
        var vma = new Vma(new VmaSlab(srcu, poison: false));
        int mmLockSeq = 0;
        const int PerThread = 20_000;
        using var start = new Barrier(2);
        void Reader()
        {
            start.SignalAndWait();

            // Lock and unlock in turns (every CAS contends with the other thread's), then hold PerThread counts.
            for (int i = 0; i < PerThread; i++)
            {
                Assert.Equal(VmaReadLockResult.Locked, vma.TryReadLock(ref mmLockSeq));
                vma.ReadUnlock();
            }

            for (int i = 0; i < PerThread; i++)
            {
                Assert.Equal(VmaReadLockResult.Locked, vma.TryReadLock(ref mmLockSeq));
            }
        }

        Task first = Task.Factory.StartNew(Reader, TaskCreationOptions.LongRunning);
        Task second = Task.Factory.StartNew(Reader, TaskCreationOptions.LongRunning);
        Assert.True(Task.WaitAll([first, second], TimeSpan.FromSeconds(60)));
        Assert.Equal(2 * PerThread, vma.ReaderCount);

        // A detach now keeps the count (readers inside finish) and refuses newcomers.
        vma.MarkDetached();
        Assert.Equal(VmaReadLockResult.Detached, vma.TryReadLock(ref mmLockSeq));
        for (int i = 0; i < 2 * PerThread; i++)
        {
            vma.ReadUnlock();
        }

        Assert.Equal(Vma.ReaderDetached, vma.ReaderCount);
        Assert.Throws<SynchronizationLockException>(vma.ReadUnlock);
    }
}
