using System.Diagnostics;
using SpecVm.Sync;
using Xunit.Abstractions;

namespace SpecVm.Tests.Sync;

[Collection(StressCollection.Name)]
public sealed class SrcuTests(ITestOutputHelper output)
{
    private const int Seed = 0x5E5C;

    [Fact]
    public void SynchronizeWaitsForAPreexistingReaderAndReturnsOnceItLeaves()
    {
        using var srcu = new Srcu(GracePeriodChecker.CpuCount);
        GracePeriodCheckResult result = GracePeriodChecker.Run(srcu, Seed);
        output.WriteLine($"seed 0x{Seed:X}: {result}");

        Assert.True(result.Violations.Count == 0, string.Join("; ", result.Violations));
        Assert.Equal(1, srcu.GracePeriods);
        Assert.True(result.IndicesSeenByLaterReaders == 0b11, "Later readers never moved to the other index: the flip did not happen.");
    }

    [Fact]
    public void GracePeriodCheckerCatchesSynchronizeThatSkipsTheIndexFlip()
    {
        // Planted bug: Synchronize waits on the inactive index, then on the current one, but never flips. Safety
        // still holds (every reader it must wait for counts in the index it checks, so it cannot return early);
        // what breaks is progress. Readers that arrive after Synchronize began keep using the index it is draining,
        // and a relay of them, each entering before the previous one leaves, keeps that index busy forever: the grace
        // period never ends although every reader that began before it has long left. With the flip, later readers
        // count in the other index and the wait finishes as soon as the pre-existing reader leaves. (Linux's
        // srcu_readers_active_idx_check comment makes the same point: the flip is what bounds the wait.)
        using var srcu = new Srcu(GracePeriodChecker.CpuCount) { PlantSkipFlip = true };
        GracePeriodCheckResult result = GracePeriodChecker.Run(srcu, Seed);
        output.WriteLine($"seed 0x{Seed:X}: {result}");

        Assert.Contains(result.Violations, v => v.StartsWith("liveness", StringComparison.Ordinal));
        Assert.DoesNotContain(result.Violations, v => v.StartsWith("safety", StringComparison.Ordinal));
        Assert.Equal(0b01, result.IndicesSeenByLaterReaders);
    }

    [Fact]
    public void DeferredCallbackRunsOnceAndOnlyAfterTheReaderInsideLeaves()
    {
        using var srcu = new Srcu(2);
        var probe = new CallbackProbe();
        int idx = -1;
        var reader = new ParkedThread(
            "reader (cpu 0)",
            enter: () => idx = srcu.ReadLock(0),
            leave: () =>
            {
                Volatile.Write(ref probe.ReaderLeft, 1); // Last act inside the section.
                srcu.ReadUnlock(0, idx);
            });

        srcu.Defer(static s => ((CallbackProbe)s!).Run(), probe);
        Thread.Sleep(100);
        Assert.Equal(0, probe.Runs);
        Assert.Equal(0, srcu.CallbacksRun);

        reader.ReleaseAndJoin();
        srcu.Barrier();
        Assert.Equal(1, probe.Runs);
        Assert.Equal(1, probe.ReaderLeftWhenRun);
        Assert.Equal(1, srcu.CallbacksRun);

        srcu.Barrier();
        Thread.Sleep(10);
        Assert.Equal(1, probe.Runs); // Exactly once.
    }

    [Fact]
    public void ManyDeferredCallbacksEachRunExactlyOnceAfterAGracePeriod()
    {
        const int PerCpu = 500;
        using var srcu = new Srcu(2);
        int[] runs = new int[2 * PerCpu];
        long early = 0;

        var threads = new TestThread[2];
        for (int c = 0; c < 2; c++)
        {
            int cpu = c;
            threads[c] = new TestThread($"deferring reader (cpu {cpu})", () =>
            {
                for (int i = 0; i < PerCpu; i++)
                {
                    int idx = srcu.ReadLock(cpu); // call_srcu from inside a read section is allowed.
                    var item = new DeferredItem(srcu, runs, cpu * PerCpu + i, srcu.GracePeriods, () => Interlocked.Increment(ref early));
                    srcu.Defer(static s => ((DeferredItem)s!).Run(), item);
                    srcu.ReadUnlock(cpu, idx);
                }
            });
        }

        foreach (TestThread thread in threads)
        {
            thread.Join();
        }

        srcu.Barrier();
        output.WriteLine($"{runs.Length} callbacks in {srcu.GracePeriods} grace periods");
        Assert.All(runs, r => Assert.Equal(1, r));
        Assert.Equal(runs.Length, srcu.CallbacksRun);
        Assert.Equal(0, early);
        Assert.Equal(0, srcu.PendingCallbacks);
    }

    [Fact]
    public void BarrierWaitsForQueuedCallbacks()
    {
        using var srcu = new Srcu(2);
        srcu.Barrier(); // Nothing queued: returns at once.

        var probe = new CallbackProbe();
        int idx = -1;
        var reader = new ParkedThread("reader (cpu 1)", () => idx = srcu.ReadLock(1), () => srcu.ReadUnlock(1, idx));
        srcu.Defer(static s => ((CallbackProbe)s!).Run(), probe);
        int runsSeenByBarrier = -1;
        var barrier = new TestThread("barrier", () =>
        {
            srcu.Barrier();
            runsSeenByBarrier = probe.Runs;
        });

        Thread.Sleep(100);
        Assert.False(barrier.IsFinished, "Barrier returned while its callback was still waiting for a grace period.");
        reader.ReleaseAndJoin();
        barrier.Join();
        Assert.Equal(1, runsSeenByBarrier);
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(2)]
    [InlineData(int.MaxValue)]
    public void ReadUnlockWithABadIndexThrows(int idx)
    {
        using var srcu = new Srcu(2);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => srcu.ReadUnlock(0, idx));
        Assert.Equal("idx", ex.ParamName);
        Assert.True(srcu.ReadersDrained(0) && srcu.ReadersDrained(1), "A rejected unlock still moved a counter.");
    }

    [Fact]
    public void ReadLockOnABadCpuThrowsNamingCpu()
    {
        using var srcu = new Srcu(2);
        Assert.Equal("cpu", Assert.Throws<ArgumentOutOfRangeException>(() => srcu.ReadLock(2)).ParamName);
        Assert.Equal("cpu", Assert.Throws<ArgumentOutOfRangeException>(() => srcu.ReadUnlock(-1, 0)).ParamName);
    }

    [Fact]
    public void DisposeRunsPendingCallbacksAndRefusesNewOnes()
    {
        var srcu = new Srcu(1);
        var probe = new CallbackProbe();
        for (int i = 0; i < 3; i++)
        {
            srcu.Defer(static s => ((CallbackProbe)s!).Run(), probe);
        }

        srcu.Dispose();
        Assert.Equal(3, probe.Runs);
        Assert.Throws<ObjectDisposedException>(() => srcu.Defer(static _ => { }, null));
        srcu.Dispose(); // Idempotent.
    }

    [Fact]
    public void NoReaderSeesANodeRetiredThroughDefer()
    {
        using var srcu = new Srcu(RetireChecker.Readers);
        RetireCheckResult result = RetireChecker.Run(srcu, RetireChecker.RetireAfterGracePeriod, TimeSpan.FromMilliseconds(300), Seed);
        output.WriteLine($"seed 0x{Seed:X}: {result}");

        Assert.True(result.FirstViolation == null, result.FirstViolation);
        Assert.True(result.Reads >= 1000 && result.Updates >= 100, $"The stress did too little to mean anything: {result}");
        Assert.Equal(result.Updates, srcu.CallbacksRun);
    }

    [Fact]
    public void NoLiteReaderSeesANodeRetiredThroughDefer()
    {
        // Readers without a fence (srcu_read_lock_lite): the grace period's process-wide barrier must still keep every
        // reader away from what it frees.
        using var srcu = new Srcu(RetireChecker.Readers);
        Assert.False(srcu.HasLiteReaders);
        RetireCheckResult result = RetireChecker.Run(srcu, RetireChecker.RetireAfterGracePeriod, TimeSpan.FromMilliseconds(300), Seed, lite: true);
        output.WriteLine($"seed 0x{Seed:X}: {result}");

        Assert.True(srcu.HasLiteReaders);
        Assert.True(result.FirstViolation == null, result.FirstViolation);
        Assert.True(result.Reads >= 1000 && result.Updates >= 100, $"The stress did too little to mean anything: {result}");
        Assert.Equal(result.Updates, srcu.CallbacksRun);
    }

    [Fact]
    public void RetireCheckerCatchesFreeingWithoutAGracePeriodUnderLiteReaders()
    {
        using var srcu = new Srcu(RetireChecker.Readers);
        RetireCheckResult result = RetireChecker.Run(srcu, RetireChecker.RetireAtOnce, TestThreads.Bound, Seed, lite: true);
        Assert.True(result.FirstViolation != null, $"The checker missed the planted bug (retire without a grace period): {result}");
    }

    [Fact]
    public void SynchronizeWaitsForALiteReaderInside()
    {
        using var srcu = new Srcu(2);
        int idx = srcu.ReadLockLite(0);
        Task gp = Task.Run(() => srcu.Synchronize());
        Assert.False(gp.Wait(TimeSpan.FromMilliseconds(100)), "a grace period ended while a lite reader was inside");
        srcu.ReadUnlockLocal(0, idx);
        Assert.True(gp.Wait(TimeSpan.FromSeconds(10)), "the grace period did not end after the lite reader left");
        Assert.Equal(0, srcu.OpenSections(0));
    }

    [Fact]
    public void RetireCheckerCatchesFreeingWithoutAGracePeriod()
    {
        // Planted bug: the updater poisons the old node at once instead of through Defer.
        using var srcu = new Srcu(RetireChecker.Readers);
        RetireCheckResult result = RetireChecker.Run(srcu, RetireChecker.RetireAtOnce, TestThreads.Bound, Seed);
        output.WriteLine($"seed 0x{Seed:X}: {result}");

        Assert.True(result.FirstViolation != null, $"The checker missed the planted bug (retire without a grace period): {result}");
    }

    private sealed class CallbackProbe
    {
        public int ReaderLeft;
        private int _runs;
        private int _readerLeftWhenRun = -1;

        public int Runs => Volatile.Read(ref _runs);

        public int ReaderLeftWhenRun => Volatile.Read(ref _readerLeftWhenRun);

        public void Run()
        {
            Volatile.Write(ref _readerLeftWhenRun, Volatile.Read(ref ReaderLeft));
            Interlocked.Increment(ref _runs);
        }
    }

    private sealed class DeferredItem(Srcu srcu, int[] runs, int index, long gracePeriodsAtDefer, Action onEarly)
    {
        public void Run()
        {
            if (srcu.GracePeriods <= gracePeriodsAtDefer)
            {
                onEarly(); // No grace period completed since the Defer: the callback ran too early.
            }

            Interlocked.Increment(ref runs[index]);
        }
    }
}

/// <summary>What one run of <see cref="GracePeriodChecker"/> saw.</summary>
internal sealed record GracePeriodCheckResult(IReadOnlyList<string> Violations, long RelaySteps, int IndicesSeenByLaterReaders, TimeSpan? ReturnAfterLeave)
{
    public override string ToString() =>
        $"{RelaySteps} relay steps, later readers saw indices 0b{Convert.ToString(IndicesSeenByLaterReaders, 2)}, " +
        $"Synchronize returned {(ReturnAfterLeave is { } t ? $"{t.TotalMilliseconds:F2} ms after the pre-existing reader left" : "late or never")}; " +
        $"violations: {(Violations.Count == 0 ? "none" : string.Join("; ", Violations))}";
}

/// <summary>
/// The synchronize-versus-reader check. A reader on CPU 0 enters and parks; a relay of later readers on CPUs 1 and 2
/// keeps the domain busy, each entering before the previous one leaves; <see cref="Srcu.Synchronize"/> runs on its
/// own thread. Safety: it must not return while the parked reader is inside. Liveness: once that reader leaves, it
/// must return within <see cref="ReturnBound"/>, although the relay never leaves the domain without a reader.
/// </summary>
internal static class GracePeriodChecker
{
    public const int CpuCount = 3;
    public static readonly TimeSpan HoldWindow = TimeSpan.FromMilliseconds(100);
    public static readonly TimeSpan ReturnBound = TimeSpan.FromSeconds(1);

    public static GracePeriodCheckResult Run(Srcu srcu, int seed)
    {
        var violations = new List<string>();
        int parkedIdx = -1;
        var parked = new ParkedThread("pre-existing reader (cpu 0)", () => parkedIdx = srcu.ReadLock(0), () => srcu.ReadUnlock(0, parkedIdx));

        int stopRelay = 0;
        long steps = 0;
        int seen = 0;
        var relay = new TestThread("reader relay (cpus 1, 2)", () =>
        {
            var rng = new Random(seed);
            int cpu = 1;
            int idx = srcu.ReadLock(cpu);
            while (Volatile.Read(ref stopRelay) == 0)
            {
                int next = 3 - cpu; // 1 <-> 2
                int nextIdx = srcu.ReadLock(next); // The next reader enters before the current one leaves.
                Interlocked.Or(ref seen, 1 << nextIdx);
                TestThreads.Spin(rng.Next(10, 100));
                srcu.ReadUnlock(cpu, idx);
                (cpu, idx) = (next, nextIdx);
                Volatile.Write(ref steps, steps + 1);
                if (steps % 64 == 0)
                {
                    Thread.Yield(); // Still inside (idx is held): yielding cannot open a gap in the relay.
                }
            }

            srcu.ReadUnlock(cpu, idx);
        });
        Assert.True(TestThreads.SpinUntil(() => Volatile.Read(ref steps) >= 10, TestThreads.Bound), "The relay did not start.");

        using var returned = new ManualResetEventSlim();
        var synchronizer = new TestThread("synchronize", () =>
        {
            srcu.Synchronize();
            returned.Set();
        });

        TimeSpan? returnAfterLeave = null;
        try
        {
            if (returned.Wait(HoldWindow))
            {
                violations.Add("safety: Synchronize returned while a reader that entered before it was still inside");
            }

            parked.ReleaseAndJoin();
            var sw = Stopwatch.StartNew();
            if (returned.Wait(ReturnBound))
            {
                returnAfterLeave = sw.Elapsed;
            }
            else
            {
                violations.Add($"liveness: Synchronize did not return within {ReturnBound.TotalMilliseconds} ms after the last " +
                    $"pre-existing reader left, while later readers kept overlapping ({Volatile.Read(ref steps)} relay steps)");
            }
        }
        finally
        {
            Volatile.Write(ref stopRelay, 1);
            relay.Join();
            parked.Release();
            synchronizer.Join(); // With no reader left at all, even the planted Synchronize returns.
        }

        return new GracePeriodCheckResult(violations, Volatile.Read(ref steps), Volatile.Read(ref seen), returnAfterLeave);
    }
}

/// <summary>What one run of <see cref="RetireChecker"/> saw.</summary>
internal sealed record RetireCheckResult(long Reads, long Updates, string? FirstViolation, TimeSpan Elapsed)
{
    public override string ToString() =>
        $"{Reads} reads, {Updates} updates, {Elapsed.TotalMilliseconds:F0} ms, first violation: {FirstViolation ?? "none"}";
}

/// <summary>
/// The retired-node checker (the invariant SpecVm's VMA slab depends on): readers on two CPUs read the current node
/// under <see cref="Srcu.ReadLock"/> and, still inside, check it was not retired; an updater replaces the node and
/// retires the old one through the retire function under test. A reader that finds its node retired is a violation.
/// </summary>
internal static class RetireChecker
{
    public const int Readers = 2;

    /// <summary>The correct retire: poison the node only after a grace period.</summary>
    public static void RetireAfterGracePeriod(Srcu srcu, RetiredNode node) =>
        srcu.Defer(static n => Volatile.Write(ref ((RetiredNode)n!).Retired, 1), node);

    /// <summary>Planted bug: poison the node at once.</summary>
    public static void RetireAtOnce(Srcu srcu, RetiredNode node) => Volatile.Write(ref node.Retired, 1);

    public static RetireCheckResult Run(Srcu srcu, Action<Srcu, RetiredNode> retire, TimeSpan duration, int seed, bool lite = false)
    {
        var current = new RetiredNode(0);
        int stop = 0;
        long reads = 0;
        string? first = null;

        var readers = new TestThread[Readers];
        for (int c = 0; c < Readers; c++)
        {
            int cpu = c;
            readers[c] = new TestThread($"node reader (cpu {cpu})", () =>
            {
                var rng = new Random(seed + cpu);
                while (Volatile.Read(ref stop) == 0)
                {
                    int idx = lite ? srcu.ReadLockLite(cpu) : srcu.ReadLock(cpu);
                    RetiredNode node = Volatile.Read(ref current);
                    TestThreads.Spin(rng.Next(200));
                    if (Volatile.Read(ref node.Retired) != 0)
                    {
                        Interlocked.CompareExchange(ref first, $"cpu {cpu} read node {node.Generation} after it was retired", null);
                        Volatile.Write(ref stop, 1);
                    }

                    srcu.ReadUnlock(cpu, idx);
                    Interlocked.Increment(ref reads);
                }
            });
        }

        var rng = new Random(seed);
        long updates = 0;
        var sw = Stopwatch.StartNew();
        while (Volatile.Read(ref stop) == 0 && sw.Elapsed < duration)
        {
            RetiredNode old = Interlocked.Exchange(ref current, new RetiredNode(updates + 1));
            retire(srcu, old);
            updates++;
            TestThreads.Spin(rng.Next(200, 2000));
        }

        Volatile.Write(ref stop, 1);
        foreach (TestThread reader in readers)
        {
            reader.Join();
        }

        srcu.Barrier();
        return new RetireCheckResult(Volatile.Read(ref reads), updates, Volatile.Read(ref first), sw.Elapsed);
    }
}

/// <summary>A node readers find through a shared pointer; <see cref="Retired"/> is its poison.</summary>
internal sealed class RetiredNode(long generation)
{
    public int Retired;

    public long Generation => generation;
}
