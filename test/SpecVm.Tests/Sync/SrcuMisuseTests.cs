using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Tests.Mm;

namespace SpecVm.Tests.Sync;

/// <summary>
/// Issue 15, items 10 and 11: a throwing deferred callback must not kill the process, and SRCU misuse (Synchronize
/// inside a read section, an unlock without a lock) must be refused with a clear error before any counter changes.
/// </summary>
[Collection(StressCollection.Name)]
public sealed class SrcuMisuseTests
{
    [Fact]
    public void ACallbackThatThrowsSurfacesFromBarrierAndTheDomainKeepsWorking()
    {
        using var srcu = new Srcu(2);
        var ran = new int[1];
        srcu.Defer(static _ => throw new FormatException("callback one failed"), null);
        srcu.Defer(static s => Interlocked.Increment(ref ((int[])s!)[0]), ran);
        srcu.Defer(static _ => throw new DivideByZeroException(), null);

        AggregateException e = Assert.Throws<AggregateException>(srcu.Barrier);

        Assert.Collection(
            e.InnerExceptions,
            x => Assert.IsType<FormatException>(x),
            x => Assert.IsType<DivideByZeroException>(x));
        Assert.Equal(1, Volatile.Read(ref ran[0])); // The batch went on after the first failure.
        Assert.Equal(2, srcu.FailedCallbacks);

        srcu.Barrier(); // Reported once: nothing new to report.
        srcu.Defer(static s => Interlocked.Increment(ref ((int[])s!)[0]), ran);
        srcu.Barrier();
        Assert.Equal(2, Volatile.Read(ref ran[0]));
        int idx = srcu.ReadLock(0);
        srcu.ReadUnlock(0, idx);
        srcu.Synchronize();
    }

    [Fact]
    public void SynchronizeOnACpuInsideItsReadSectionThrowsNamingTheRuleAndChangesNothing()
    {
        using var srcu = new Srcu(2);
        var cpu1 = new CpuWaiter(1);
        int idx = srcu.ReadLock(1);
        long gracePeriods = srcu.GracePeriods;

        InvalidOperationException e = Assert.Throws<InvalidOperationException>(() => srcu.Synchronize(cpu1));

        Assert.Contains("inside a read section", e.Message, StringComparison.Ordinal);
        Assert.Equal(gracePeriods, srcu.GracePeriods);
        Assert.Equal(1, srcu.OpenSections(1));
        srcu.ReadUnlock(1, idx);
        srcu.Synchronize(cpu1);
        Assert.Equal(gracePeriods + 1, srcu.GracePeriods);
    }

    [Fact]
    public void AMachineCpuIsRecognisedAsTheWaiterSoSynchronizeInsideItsSectionThrows()
    {
        using Machine machine = TestMachines.Create(cpus: 1, memoryMiB: 8);
        machine.Run(0, cpu =>
        {
            Assert.Equal(0, ((ISpinWaiter)cpu).Id);
            int idx = machine.Srcu.ReadLock(cpu.Id);
            try
            {
                Assert.Throws<InvalidOperationException>(() => machine.Srcu.Synchronize(cpu));
            }
            finally
            {
                machine.Srcu.ReadUnlockLocal(cpu.Id, idx);
            }

            machine.Srcu.Synchronize(cpu);
        });
    }

    [Fact]
    public void ADoubleReadUnlockThrowsBeforeAnyCounterChangesAndLaterGracePeriodsStillEnd()
    {
        using var srcu = new Srcu(2);
        int idx = srcu.ReadLock(0);
        srcu.ReadUnlock(0, idx);

        InvalidOperationException e = Assert.Throws<InvalidOperationException>(() => srcu.ReadUnlock(0, idx));
        Assert.Contains("without an open read section", e.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => srcu.ReadUnlockLocal(0, idx));
        Assert.Equal(0, srcu.OpenSections(0));

        var done = Task.Run(() => srcu.Synchronize());
        Assert.True(done.Wait(TestThreads.Bound), "Synchronize hung after a refused double unlock.");
        Assert.True(Task.Run(() => srcu.Synchronize()).Wait(TestThreads.Bound), "The second grace period hung.");
    }

    [Fact]
    public void AnUnlockWithTheOtherIndexOrOnAnotherCpuIsRefused()
    {
        using var srcu = new Srcu(2);
        int idx = srcu.ReadLock(0);
        Assert.Throws<InvalidOperationException>(() => srcu.ReadUnlock(0, idx ^ 1));
        Assert.Throws<InvalidOperationException>(() => srcu.ReadUnlockLocal(1, idx));
        Assert.Throws<ArgumentOutOfRangeException>(() => srcu.ReadUnlock(0, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => srcu.ReadLock(2));
        Assert.Equal(1, srcu.OpenSections(0));
        srcu.ReadUnlockLocal(0, idx);
        Assert.True(Task.Run(() => srcu.Synchronize()).Wait(TestThreads.Bound));
    }

    [Fact]
    public void NestedSectionsOnOneCpuAreCountedAndEachUnlockIsAccepted()
    {
        using var srcu = new Srcu(1);
        int a = srcu.ReadLock(0);
        int b = srcu.ReadLock(0);
        Assert.Equal(2, srcu.OpenSections(0));
        srcu.ReadUnlockLocal(0, b);
        srcu.ReadUnlock(0, a);
        Assert.Equal(0, srcu.OpenSections(0));
        Assert.Throws<InvalidOperationException>(() => srcu.ReadUnlock(0, a));
    }

    [Fact]
    public void AGracePeriodLongerThanTheWatchdogThrowsHungTaskNamingTheCpu()
    {
        using var srcu = new Srcu(3) { WatchdogTimeout = TimeSpan.FromMilliseconds(200) };
        int idx = srcu.ReadLock(2); // Leaked by a non-CPU caller: no waiter Id can catch it, the watchdog does.

        HungTaskException e = Assert.Throws<HungTaskException>(() => srcu.Synchronize());

        Assert.Contains("2 (1)", e.Message, StringComparison.Ordinal);
        srcu.ReadUnlock(2, idx);
        srcu.Synchronize(); // The mutex was released and the domain still works.
    }

    [Fact]
    public void ADeferredBatchWhoseGracePeriodFailsIsDroppedNotRunEarlyAndBarrierReportsIt()
    {
        using var srcu = new Srcu(2) { WatchdogTimeout = TimeSpan.FromMilliseconds(200) };
        var ran = new int[1];
        int idx = srcu.ReadLock(0);
        srcu.Defer(static s => Interlocked.Increment(ref ((int[])s!)[0]), ran);

        AggregateException e = Assert.Throws<AggregateException>(srcu.Barrier);

        Exception dropped = Assert.Single(e.InnerExceptions);
        Assert.IsType<HungTaskException>(dropped.InnerException);
        Assert.Equal(0, Volatile.Read(ref ran[0])); // Never freed under the reader.
        Assert.Equal(1, srcu.FailedCallbacks);
        srcu.ReadUnlock(0, idx);
        srcu.Defer(static s => Interlocked.Increment(ref ((int[])s!)[0]), ran);
        srcu.Barrier();
        Assert.Equal(1, Volatile.Read(ref ran[0]));
    }

    [Fact]
    public void BarrierCalledFromADeferredCallbackThrowsInsteadOfWaitingForItself()
    {
        using var srcu = new Srcu(1);
        srcu.Defer(static s => ((Srcu)s!).Barrier(), srcu);

        AggregateException e = Assert.Throws<AggregateException>(srcu.Barrier);

        InvalidOperationException inner = Assert.IsType<InvalidOperationException>(Assert.Single(e.InnerExceptions));
        Assert.Contains("from a deferred callback", inner.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ABarrierBehindACallbackThatNeverReturnsThrowsHungTaskAfterTheWatchdog()
    {
        var release = new ManualResetEventSlim();
        using var srcu = new Srcu(1) { WatchdogTimeout = TimeSpan.FromMilliseconds(300) };
        srcu.Defer(static s => ((ManualResetEventSlim)s!).Wait(), release);

        Assert.Throws<HungTaskException>(srcu.Barrier);

        release.Set();
        srcu.Barrier(); // The callback returned: the batch completes and nothing is left to report.
    }

    [Fact]
    public void AWaiterThatThrowsDuringAGracePeriodReleasesTheMutexAndTheNextGracePeriodEnds()
    {
        using var srcu = new Srcu(2);
        int idx = srcu.ReadLock(1);
        var throwing = new CountingSpinWaiter { OnRelax = static () => throw new TimeZoneNotFoundException("IPI handler failed") };

        Assert.Throws<TimeZoneNotFoundException>(() => srcu.Synchronize(throwing));

        srcu.ReadUnlock(1, idx);
        Assert.True(Task.Run(() => srcu.Synchronize()).Wait(TestThreads.Bound), "The grace period after a failed one hung.");
        Assert.Equal(1, srcu.GracePeriods);
    }

    [Fact]
    public void UseAfterDisposeThrowsObjectDisposed()
    {
        var srcu = new Srcu(1);
        srcu.Dispose();
        Assert.Throws<ObjectDisposedException>(() => srcu.ReadLock(0));
        Assert.Throws<ObjectDisposedException>(() => srcu.Synchronize());
        Assert.Throws<ObjectDisposedException>(() => srcu.Defer(static _ => { }, null));
        srcu.Barrier(); // Nothing queued: returns.
        srcu.Dispose(); // Idempotent.
    }

    /// <summary>A waiter that says it is CPU <c>id</c>, as a machine's CPU does.</summary>
    private sealed class CpuWaiter(int id) : ISpinWaiter
    {
        public int Id => id;

        public void Relax()
        {
        }

        public void PrepareToBlock()
        {
        }

        public void FinishBlock()
        {
        }
    }
}
