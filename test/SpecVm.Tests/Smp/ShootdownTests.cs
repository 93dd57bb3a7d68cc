using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Memory;
using Xunit.Abstractions;

namespace SpecVm.Tests.Smp;

public class ShootdownTests(ITestOutputHelper output)
{
    private static readonly TimeSpan StressBudget = TimeSpan.FromSeconds(1);

    internal static Machine NewMachine(long memory = 64L << 20) =>
        new(new MachineOptions { CpuCount = 2, MemoryBytes = memory, WatchdogTimeout = TimeSpan.FromSeconds(5) });

    private int Seed()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        return seed;
    }

    [Fact]
    public void AfterAShootdownReturnsNoCpuUsesTheOldFrameThroughAStaleTranslation()
    {
        int seed = Seed();
        using Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            StaleTranslationChecker.Report report = StaleTranslationChecker.Run(m, mm, HammerMode.Awake, StressBudget, stopAtFirst: false, seed, output);
            Assert.True(report.Violations == 0, report.FirstViolation);
            Assert.True(report.Rounds > 0 && report.Reclaimed > 0, $"The check ran no useful rounds: {report}");
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void ACpuNappingBetweenAccessesNeverKeepsAStaleTranslation()
    {
        int seed = Seed();
        using Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            StaleTranslationChecker.Report report = StaleTranslationChecker.Run(m, mm, HammerMode.Napping, StressBudget, stopAtFirst: false, seed, output);
            Assert.True(report.Violations == 0, report.FirstViolation);
            Assert.True(report.Rounds > 0, $"The check ran no rounds: {report}");
        }

        output.WriteLine($"lazy targets skipped {m.Counter(CpuCounter.LazyTargetsSkipped)}, lazy catch-ups {m.Counter(CpuCounter.LazyCatchUps)}");
        ledger.AssertBalanced();
    }

    [Fact]
    public void TheStaleTranslationCheckerCatchesACpuThatRunsWhileMarkedLazy()
    {
        int seed = Seed();
        using Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            StaleTranslationChecker.Report report = StaleTranslationChecker.Run(m, mm, HammerMode.PlantRunWhileLazy, TimeSpan.FromSeconds(2), stopAtFirst: true, seed, output);
            Assert.True(report.Violations > 0, $"The planted stale TLB was not caught: {report}");
            Assert.True(m.Counter(CpuCounter.LazyTargetsSkipped) > 0);
        }

        ledger.AssertBalanced();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TargetedShootdownsNeverLeaveAStaleTranslation(bool napping)
    {
        HammerMode mode = napping ? HammerMode.Napping : HammerMode.Awake;
        int seed = Seed();
        using Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy(), new AddressSpaceOptions { TargetedShootdowns = true }))
        {
            StaleTranslationChecker.Report report = StaleTranslationChecker.Run(m, mm, mode, StressBudget, stopAtFirst: false, seed, output, keepTable: true);
            Assert.True(report.Violations == 0, report.FirstViolation);
            Assert.True(report.Rounds > 0, $"The check ran no rounds: {report}");
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void TheStaleTranslationCheckerCatchesATargetedShootdownThatSkipsTheCpuThatCachesThePage()
    {
        int seed = Seed();
        using Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy(), new AddressSpaceOptions { TargetedShootdowns = true }) { PlantTargetNoCpus = true })
        {
            StaleTranslationChecker.Report report = StaleTranslationChecker.Run(m, mm, HammerMode.Awake, TimeSpan.FromSeconds(2), stopAtFirst: true, seed, output, keepTable: true);
            Assert.True(report.Violations > 0, $"The planted targeting bug was not caught: {report}");
            mm.PlantTargetNoCpus = false;
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void TargetedShootdownsInterruptOnlyTheCpusThatCachedTheRange()
    {
        using Machine m = NewMachine();
        foreach (bool targeted in new[] { false, true })
        {
            using var mm = new AddressSpace(m, new MmapLockStrategy(), new AddressSpaceOptions { TargetedShootdowns = targeted });
            ulong mine = m.Run(0, cpu => mm.Map(cpu, 4096, Protection.ReadWrite, fixedAddress: 0x4000_0000));
            ulong theirs = m.Run(0, cpu => mm.Map(cpu, 4096, Protection.ReadWrite, fixedAddress: 0x8000_0000));
            using var stop = new ManualResetEventSlim();
            Task other = m.RunAsync(1, cpu =>
            {
                while (!stop.IsSet)
                {
                    mm.Write(cpu, theirs, 1UL); // Awake in the address space, in its own 2 MiB region.
                }
            });
            CounterSnapshot before = m.Snapshot();
            m.Run(0, cpu =>
            {
                while (!(m.Cpu(1).Loaded?.Equals(mm.TlbContext) ?? false))
                {
                    Thread.Yield();
                }

                for (int i = 0; i < 100; i++)
                {
                    mm.Write(cpu, mine, (ulong)i);
                    mm.DontNeed(cpu, mine, 4096); // Zaps a page only CPU 0 ever cached; frees no table.
                }
            });
            CounterSnapshot d = m.Snapshot().Minus(before);
            stop.Set();
            other.Wait();
            output.WriteLine($"targeted {targeted}: IPIs sent {d[CpuCounter.IpisSent]}, avoided {d[CpuCounter.TargetedIpisAvoided]}");
            if (targeted)
            {
                Assert.Equal(0, d[CpuCounter.IpisSent]);
                Assert.Equal(100, d[CpuCounter.TargetedIpisAvoided]);
            }
            else
            {
                Assert.True(d[CpuCounter.IpisSent] > 0, "Without targeting CPU 1 should have been interrupted (it is awake in the address space).");
            }
        }
    }

    [Fact]
    public void TwoCpusShootingEachOtherDownAtTheSameTimeBothComplete()
    {
        int seed = Seed();
        var rng = new Random(seed);
        int rounds = 20_000 + rng.Next(1000);

        // Not `using`: if the CPUs hang, disposing the machine would hang too; the test must fail instead.
        Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        var mm = new AddressSpace(m, new MmapLockStrategy());
        ulong va = m.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4096, Protection.ReadWrite);
            mm.Write(cpu, a, 1UL);
            return a;
        });
        int ready = 0;
        var done = new long[2];
        long deadline = Stopwatch.GetTimestamp() + (long)(StressBudget.TotalSeconds * Stopwatch.Frequency);
        Action<Cpu> work = cpu =>
        {
            // Load the address space (join its CPU mask) through an access, then start together.
            Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, va, out ulong _));
            Interlocked.Increment(ref ready);
            Spin.Until(cpu, () => Volatile.Read(ref ready) == 2, "the other CPU to start");
            long i = 0;
            for (; i < rounds && Stopwatch.GetTimestamp() < deadline; i++)
            {
                cpu.Shootdown(mm.TlbContext, va, va + 4096);
                if ((i & 15) == 0)
                {
                    Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, va, out ulong _)); // Refill, so flushes have work.
                }
            }

            done[cpu.Id] = i;
        };
        long ipisBefore = m.Counter(CpuCounter.IpisSent);
        Spin.Join(TimeSpan.FromSeconds(10), "Two CPUs shooting each other down", m.RunAsync(0, work), m.RunAsync(1, work));
        long ipis = m.Counter(CpuCounter.IpisSent) - ipisBefore;
        output.WriteLine($"rounds {done[0]} + {done[1]} of {rounds} each, IPIs sent {ipis}, served {m.Counter(CpuCounter.IpisServed)}");
        Assert.True(done[0] > 0 && done[1] > 0);
        Assert.True(ipis > 0, "No IPI was sent: the CPUs never shot each other down.");
        m.Run(0, cpu => mm.Unmap(cpu, va, 4096));
        mm.Dispose();
        ledger.AssertBalanced();
        m.Dispose();
    }

    [Fact]
    public void ACpuAsleepBeforeTheShootdownStartsIsSkippedAndFlushesItselfOnWake()
    {
        using Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            using var asleep = new ManualResetEventSlim();
            using var wake = new ManualResetEventSlim();
            ulong va = m.Run(0, cpu => TouchTwoPages(mm, cpu));
            CounterSnapshot before = m.Snapshot();
            Task sleeper = m.RunAsync(1, cpu =>
            {
                Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, va, out ulong _));
                Assert.True(cpu.Tlb.Contains(va >> 12));
                cpu.PrepareToBlock();
                Assert.True(cpu.IsLazy);
                asleep.Set();
                bool woke = wake.Wait(Spin.HandOff);
                cpu.FinishBlock();
                Assert.True(woke, "Never woken.");
                Assert.False(cpu.Tlb.Contains(va >> 12), "The sleeper woke with the old translation still in its TLB.");
                Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, va, out ulong _));
                Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, va + 4096, out ulong _));
            });
            Assert.True(asleep.Wait(Spin.HandOff), "CPU 1 never went to sleep.");

            // CPU 1 is lazy and serves nothing: the unmap must not wait for it.
            Task unmap = m.RunAsync(0, cpu => mm.Unmap(cpu, va, 4096));
            Spin.Join(Spin.HandOff, "An unmap with a sleeping CPU in the mask", unmap);
            CounterSnapshot mid = m.Snapshot().Minus(before);
            Assert.Equal(1, mid[CpuCounter.LazyTargetsSkipped]);
            Assert.Equal(0, mid[CpuCounter.IpisSent]);
            wake.Set();
            Spin.Join(Spin.HandOff, "The sleeper", sleeper);
            Assert.Equal(1, m.Snapshot().Minus(before)[CpuCounter.LazyCatchUps]);
            m.Run(0, cpu => mm.Unmap(cpu, va + 4096, 4096));
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void ACpuThatFallsAsleepAfterTheIpiIsPostedServesItOnTheWayAndCatchesUpOnWake()
    {
        using Machine m = NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            using var asleep = new ManualResetEventSlim();
            using var wake = new ManualResetEventSlim();
            ulong va = m.Run(0, cpu => TouchTwoPages(mm, cpu));
            int loaded = 0;
            CounterSnapshot before = m.Snapshot();
            Task sleeper = m.RunAsync(1, cpu =>
            {
                Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, va, out ulong _));
                Assert.Equal(AccessResult.Ok, mm.TryRead(cpu, va + 4096, out ulong _));
                Volatile.Write(ref loaded, 1);

                // Busy in code with no interrupt point until the flush IPI lands in the inbox.
                Spin.UntilNoPoll(cpu, () => cpu.PendingIpis != 0, "the flush IPI");
                Assert.True(cpu.Tlb.Contains(va >> 12), "Flushed before serving the IPI?");
                cpu.PrepareToBlock();
                Assert.False(cpu.Tlb.Contains(va >> 12), "Went to sleep without serving the IPI already posted.");
                asleep.Set();
                bool woke = wake.Wait(Spin.HandOff);
                cpu.FinishBlock();
                Assert.True(woke, "Never woken.");
                Assert.False(cpu.Tlb.Contains((va + 4096) >> 12), "The page unmapped during the sleep is still in the TLB.");
                Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, va, out ulong _));
                Assert.Equal(AccessResult.SegmentationFault, mm.TryRead(cpu, va + 4096, out ulong _));
            });
            Spin.Join(Spin.HandOff, "CPU 1 loading the pages", Task.Run(() => SpinWait.SpinUntil(() => Volatile.Read(ref loaded) != 0 || sleeper.IsCompleted)));
            Assert.False(sleeper.IsFaulted, sleeper.Exception?.ToString());

            // CPU 1 is awake: the IPI is posted and the unmap waits until CPU 1 serves it as it goes to sleep.
            Task first = m.RunAsync(0, cpu => mm.Unmap(cpu, va, 4096));
            Spin.Join(Spin.HandOff, "An unmap racing a CPU going to sleep", first);
            Assert.True(asleep.Wait(Spin.HandOff), "CPU 1 never went to sleep.");
            CounterSnapshot mid = m.Snapshot().Minus(before);
            Assert.Equal(1, mid[CpuCounter.IpisSent]);
            Assert.Equal(0, mid[CpuCounter.LazyTargetsSkipped]);

            // While it sleeps, a second unmap skips it; it must flush when it wakes.
            m.Run(0, cpu => mm.Unmap(cpu, va + 4096, 4096));
            Assert.Equal(1, m.Snapshot().Minus(before)[CpuCounter.LazyTargetsSkipped]);
            wake.Set();
            Spin.Join(Spin.HandOff, "The sleeper", sleeper);
            Assert.Equal(1, m.Snapshot().Minus(before)[CpuCounter.LazyCatchUps]);
        }

        ledger.AssertBalanced();
    }

    private static ulong TouchTwoPages(AddressSpace mm, Cpu cpu)
    {
        ulong a = mm.Map(cpu, 2 * 4096, Protection.ReadWrite);
        mm.Write(cpu, a, 1UL);
        mm.Write(cpu, a + 4096, 2UL);
        return a;
    }
}
