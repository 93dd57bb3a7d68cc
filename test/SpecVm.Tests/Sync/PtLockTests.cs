using System.Diagnostics;
using SpecVm.Sync;
using Xunit.Abstractions;

namespace SpecVm.Tests.Sync;

[Collection(StressCollection.Name)]
public sealed class PtLockTests(ITestOutputHelper output)
{
    private const int Seed = 0x5E71;

    [Fact]
    public void MutualExclusionHoldsUnderStress()
    {
        const int Threads = 4;
        var box = new LockBox();
        long[] acquisitions = new long[Threads];
        int inside = 0;
        long violations = 0;
        long plainCounter = 0;
        int stop = 0;

        var threads = new TestThread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int owner = t;
            threads[t] = new TestThread($"ptlock stress {owner}", () =>
            {
                var rng = new Random(Seed + owner);
                var waiter = new CountingSpinWaiter();
                while (Volatile.Read(ref stop) == 0)
                {
                    if (rng.Next(4) == 0)
                    {
                        if (!box.Lock.TryLock(owner))
                        {
                            continue;
                        }
                    }
                    else
                    {
                        box.Lock.Lock(owner, owner % 2 == 0 ? null : waiter);
                    }

                    if (Interlocked.Increment(ref inside) != 1 || box.Lock.Owner != owner)
                    {
                        Interlocked.Increment(ref violations);
                    }

                    plainCounter++; // Racy on purpose: only mutual exclusion keeps it exact.
                    TestThreads.Spin(rng.Next(8));
                    Interlocked.Decrement(ref inside);
                    box.Lock.Unlock(owner);
                    acquisitions[owner]++;
                    TestThreads.Spin(rng.Next(8));
                }
            });
        }

        Thread.Sleep(300);
        Volatile.Write(ref stop, 1);
        foreach (TestThread thread in threads)
        {
            thread.Join();
        }

        output.WriteLine($"seed 0x{Seed:X}: {Threads} threads, acquisitions {string.Join(", ", acquisitions)}");
        Assert.Equal(0, violations);
        Assert.Equal(acquisitions.Sum(), plainCounter);
        Assert.All(acquisitions, a => Assert.True(a > 0, "A thread never got the lock."));
        Assert.False(box.Lock.IsLocked);
        Assert.Equal(-1, box.Lock.Owner);
    }

    [Fact]
    public void TryLockFailsWhileHeld()
    {
        var box = new LockBox();
        Assert.True(box.Lock.TryLock(0));
        Assert.True(box.Lock.IsLocked);
        Assert.Equal(0, box.Lock.Owner);
        Assert.False(box.Lock.TryLock(1), "TryLock by another owner succeeded on a held lock.");
        Assert.False(box.Lock.TryLock(0), "TryLock by the holder succeeded on its own held lock.");

        bool fromOtherThread = true;
        new TestThread("trylock elsewhere", () => fromOtherThread = box.Lock.TryLock(2)).Join();
        Assert.False(fromOtherThread);

        box.Lock.Unlock(0);
        Assert.True(box.Lock.TryLock(1));
        Assert.Equal(1, box.Lock.Owner);
        box.Lock.Unlock(1);
        Assert.False(box.Lock.IsLocked);
    }

    [Fact]
    public void UnlockByANonOwnerOrWhenNotHeldThrows()
    {
        var box = new LockBox();
        Assert.Throws<SynchronizationLockException>(() => box.Lock.Unlock(0));
        Assert.False(box.Lock.IsLocked);

        box.Lock.Lock(3, null);
        var ex = Assert.Throws<SynchronizationLockException>(() => box.Lock.Unlock(4));
        Assert.Contains("held by owner 3", ex.Message);
        Assert.Equal(3, box.Lock.Owner); // Still held by its owner.

        // Taking a lock one already holds would spin forever in the kernel; here it is reported.
        Assert.Throws<SynchronizationLockException>(() => box.Lock.Lock(3, null));
        Assert.Equal(3, box.Lock.Owner);

        box.Lock.Unlock(3);
        Assert.Throws<SynchronizationLockException>(() => box.Lock.Unlock(3)); // Double unlock.
        Assert.True(box.Lock.TryLock(4));
        box.Lock.Unlock(4);
    }

    [Fact]
    public void LockSpinLoopCallsTheRelaxHookWhileItWaits()
    {
        const int RelaxesBeforeRelease = 1000;
        var box = new LockBox();
        box.Lock.Lock(0, null);

        var waiter = new CountingSpinWaiter();
        int ownerInside = -1;
        var spinner = new TestThread("spinning cpu 1", () =>
        {
            box.Lock.Lock(1, waiter);
            ownerInside = box.Lock.Owner;
            box.Lock.Unlock(1);
        });

        Assert.True(TestThreads.SpinUntil(() => waiter.Relaxes >= RelaxesBeforeRelease, TestThreads.Bound), $"Relax was called only {waiter.Relaxes} times.");
        Assert.Equal(0, box.Lock.Owner);
        box.Lock.Unlock(0);
        spinner.Join();

        Assert.Equal(1, ownerInside);
        Assert.Equal(0, waiter.Blocks); // A spinlock never sleeps.
        output.WriteLine($"Relax called {waiter.Relaxes} times while the lock was held.");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ASpinnerServesAShootdownOnlyWithInterruptsEnabled(bool irqsEnabled)
    {
        // The article's deadlock in miniature: CPU 0 (unmap) holds the PTL and waits for CPU 1 to acknowledge a TLB
        // flush IPI; CPU 1 (a fault) spins on that PTL. Its spin loop's Relax is where it would serve the IPI, but only
        // if its interrupts are enabled. With them disabled the ack never comes; the test waits a bounded time, then
        // lets CPU 0 give up (a real kernel would hang), and shows the 2017 fix: TryLock fails at once instead.
        var box = new LockBox();
        int ipiPending = 0;
        using var ack = new ManualResetEventSlim();
        var cpu1 = new CountingSpinWaiter
        {
            OnRelax = () =>
            {
                if (irqsEnabled && Interlocked.Exchange(ref ipiPending, 0) == 1)
                {
                    ack.Set(); // flush_tlb_func: flush, then acknowledge.
                }
            },
        };

        box.Lock.Lock(0, null);
        Assert.False(box.Lock.TryLock(1), "The speculative fault's TryLock must fail while unmap holds the PTL.");
        var fault = new TestThread("faulting cpu 1", () =>
        {
            box.Lock.Lock(1, cpu1);
            box.Lock.Unlock(1);
        });

        Assert.True(TestThreads.SpinUntil(() => cpu1.Relaxes > 0, TestThreads.Bound), "CPU 1 never spun.");
        Volatile.Write(ref ipiPending, 1); // Send the flush IPI, then wait for the ack while holding the PTL.
        bool acked = ack.Wait(irqsEnabled ? TestThreads.Bound : TimeSpan.FromMilliseconds(200));
        box.Lock.Unlock(0);
        fault.Join();

        output.WriteLine($"irqs {(irqsEnabled ? "enabled" : "disabled")}: ack {(acked ? "received" : "never came")} after {cpu1.Relaxes} relaxes");
        Assert.Equal(irqsEnabled, acked);
    }

    /// <summary>Holds the mutable lock struct in a field, as the page-frame metadata will.</summary>
    private sealed class LockBox
    {
        public PtLock Lock;
    }

    [Fact]
    public void ASpinOnALockThatIsNeverReleasedEndsWithTheHungTaskWatchdog()
    {
        long saved = PtLock.WatchdogTicks;
        var box = new PtLockBox();
        box.Lock.Lock(0, null); // Owner 0 takes it and never unlocks.
        try
        {
            PtLock.WatchdogTicks = Stopwatch.Frequency / 5; // 200 ms instead of the default.
            var t = new TestThread("spinner", () =>
            {
                var e = Assert.Throws<HungTaskException>(() => box.Lock.Lock(1, null));
                Assert.Contains("owner 0", e.Message);
            });
            t.Join();
        }
        finally
        {
            PtLock.WatchdogTicks = saved;
            box.Lock.Unlock(0);
        }

        box.Lock.Lock(1, null); // The lock is intact after the watchdog fired.
        box.Lock.Unlock(1);
    }

    private sealed class PtLockBox
    {
        public PtLock Lock;
    }
}
