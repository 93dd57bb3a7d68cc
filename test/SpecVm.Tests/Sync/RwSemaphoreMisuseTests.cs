using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Tests.Mm;

namespace SpecVm.Tests.Sync;

/// <summary>
/// Issue 15, item 2: a writer that leaves the mmap lock's slow path by an exception must not leave its waiting-writer
/// unit behind (a phantom writer: readers refused for good, every later fault hangs).
/// </summary>
[Collection(StressCollection.Name)]
public sealed class RwSemaphoreMisuseTests
{
    [Fact]
    public void AWriterWhoseSpinWaiterThrowsWithdrawsItsWaitingUnitAndReadersProceed()
    {
        var sem = new RwSemaphore();
        sem.ReadLock();
        var waiter = new CountingSpinWaiter { OnRelax = static () => throw new InvalidTimeZoneException("IPI handler failed") };

        Assert.Throws<InvalidTimeZoneException>(() => sem.WriteLock(waiter));

        Assert.Equal(0, sem.WaitingWriters);
        Assert.Equal(1, sem.ReaderCount);
        Assert.True(sem.TryReadLock(), "A reader was refused after the failed writer left: a phantom waiting writer.");
        sem.ReadUnlock();
        sem.ReadUnlock();
        Assert.True(sem.TryWriteLock(), "The lock is not free after every holder left.");
        sem.WriteUnlock();
    }

    [Fact]
    public void AWriterThatWouldSleepWithInterruptsOffWhileTheLockIsReadHeldLeavesTheFaultPathWorking()
    {
        using Machine machine = TestMachines.Create(cpus: 1, memoryMiB: 16);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong address = machine.Run(0, cpu => mm.Map(cpu, 4096, Protection.ReadWrite));

        machine.Run(0, cpu =>
        {
            mm.MmapLock.ReadLock(cpu);
            cpu.LocalIrqDisable();
            try
            {
                // Spins SpinIterations rounds, then the CPU refuses to sleep with irqs off ("sleeping function called
                // from invalid context"): the writer had already announced itself when that assertion threw.
                InvalidOperationException e = Assert.Throws<InvalidOperationException>(() => mm.MmapLock.WriteLock(cpu));
                Assert.Contains("interrupts disabled", e.Message, StringComparison.Ordinal);
            }
            finally
            {
                cpu.LocalIrqEnable();
                mm.MmapLock.ReadUnlock();
            }
        });

        Assert.Equal(0, mm.MmapLock.WaitingWriters);
        AccessResult written = AccessResult.SegmentationFault;
        long read = 0;
        Task fault = machine.RunAsync(0, cpu =>
        {
            written = mm.TryWrite(cpu, address, 42L);
            mm.TryRead(cpu, address, out read);
        });
        Assert.True(fault.Wait(TestThreads.Bound), "A fault hung after the failed writer: a phantom waiting writer.");
        Assert.Equal(AccessResult.Ok, written);
        Assert.Equal(42L, read);
    }

    [Fact]
    public void ASleepingReaderBehindAWriterThatFailsIsWokenAndEnters()
    {
        var sem = new RwSemaphore();
        sem.ReadLock(); // The holder that makes the writer wait.
        var failWriter = new ManualResetEventSlim();
        var writerWaiting = new ManualResetEventSlim();
        var writer = new TestThread("writer", () =>
        {
            var waiter = new CountingSpinWaiter
            {
                OnRelax = () =>
                {
                    writerWaiting.Set();
                    if (failWriter.IsSet)
                    {
                        throw new OperationCanceledException("waiter failed");
                    }
                },
            };
            // The writer spins (never sleeps: its waiter is called on every round) until told to fail.
            Assert.Throws<OperationCanceledException>(() => sem.WriteLock(waiter));
        });
        Assert.True(writerWaiting.Wait(TestThreads.Bound));

        var readerWaiter = new CountingSpinWaiter();
        var reader = new TestThread("reader", () =>
        {
            sem.ReadLock(readerWaiter); // Backs off behind the waiting writer and goes to sleep.
            sem.ReadUnlock();
        });
        Assert.True(readerWaiter.Blocked.Wait(TestThreads.Bound), "The reader never went to sleep behind the writer.");

        failWriter.Set();
        writer.Join();
        reader.Join(); // Bounded: a reader left asleep behind a phantom writer fails here.
        Assert.Equal(0, sem.WaitingWriters);
        sem.ReadUnlock();
    }

    [Fact]
    public void AWriteWaitLongerThanTheWatchdogThrowsHungTaskAndChangesNothing()
    {
        var sem = new RwSemaphore { WatchdogTimeout = TimeSpan.FromMilliseconds(200) };
        sem.ReadLock(); // Never released while the writer waits: the writer would wait forever.

        HungTaskException e = Assert.Throws<HungTaskException>(() => sem.WriteLock());

        Assert.True(e.Waited >= TimeSpan.FromMilliseconds(200), $"waited only {e.Waited}");
        Assert.Contains("mmap lock for write", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, sem.WaitingWriters);
        Assert.Equal(1, sem.ReaderCount);
        Assert.False(sem.IsWriteLocked);
        sem.ReadUnlock();
    }

    [Fact]
    public void AReadWaitLongerThanTheWatchdogThrowsHungTaskAndChangesNothing()
    {
        var sem = new RwSemaphore { WatchdogTimeout = TimeSpan.FromMilliseconds(200) };
        sem.WriteLock();
        var reader = new TestThread("reader", () => Assert.Throws<HungTaskException>(() => sem.ReadLock()));
        reader.Join();
        Assert.Equal(0, sem.ReaderCount);
        sem.WriteUnlock();
        Assert.True(sem.TryReadLock());
        sem.ReadUnlock();
    }

    [Fact]
    public void TheWatchdogIsOnInDebugBuildsOnlyAndRejectsANonPositiveTimeout()
    {
        var sem = new RwSemaphore();
#if DEBUG
        Assert.Equal(TimeSpan.FromSeconds(30), sem.WatchdogTimeout);
#else
        Assert.Equal(Timeout.InfiniteTimeSpan, sem.WatchdogTimeout);
#endif
        Assert.Throws<ArgumentOutOfRangeException>(() => sem.WatchdogTimeout = TimeSpan.Zero);
        sem.WatchdogTimeout = Timeout.InfiniteTimeSpan;
        Assert.Equal(Timeout.InfiniteTimeSpan, sem.WatchdogTimeout);
    }

    [Fact]
    public void AnExtraExitThrowsAndLeavesTheLockUsable()
    {
        var sem = new RwSemaphore();
        Assert.Throws<SynchronizationLockException>(sem.ReadUnlock);
        Assert.Throws<SynchronizationLockException>(sem.WriteUnlock);
        Assert.Equal(0, sem.ReaderCount);
        Assert.True(sem.TryWriteLock());
        sem.WriteUnlock();
    }
}
