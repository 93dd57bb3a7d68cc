using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Mm;
using Xunit.Abstractions;

namespace SpecVm.Tests.Faults;

/// <summary>
/// The races the speculative fault's validation exists for, made to happen every time: CPU 1 is parked inside a
/// speculative fault (VMA looked up, sequence count read, no lock held) while CPU 0 unmaps or write-protects the page,
/// then CPU 1 goes on. The correct strategy notices under the PTL and falls back; the planted bugs are caught by the
/// oracle and the invariant checker, which is what proves those checks can fail.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed class SpeculativeRaceTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;

    /// <summary>A 2 MiB-aligned base: both pages below share one PTE table.</summary>
    private const ulong Base = 0x6000_0000;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AFaultRacingUnmapNeverLeavesAPteOutsideEveryVma(bool plantSkipSeqRecheck)
    {
        Race(new SpeculativeStrategy { PlantSkipSeqRecheck = plantSkipSeqRecheck }, (cpu, mm) => mm.Unmap(cpu, Base + Page, Page), out AccessResult result, out IReadOnlyList<string> violations, out long poisoned);
        if (plantSkipSeqRecheck)
        {
            // Caught twice: the write to an unmapped page succeeded (the oracle says SIGSEGV), and the checker finds the PTE.
            Assert.Equal(AccessResult.Ok, result);
            Assert.Contains(violations, v => v.Contains("outside every VMA", StringComparison.Ordinal));
        }
        else
        {
            Assert.Equal(AccessResult.SegmentationFault, result);
            Assert.Empty(violations);
        }

        Assert.Equal(0, poisoned);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AFaultRacingProtectNeverInstallsAWritablePteInAReadOnlyVma(bool plantSkipSeqRecheck)
    {
        Race(new SpeculativeStrategy { PlantSkipSeqRecheck = plantSkipSeqRecheck }, (cpu, mm) => mm.Protect(cpu, Base + Page, Page, Protection.Read), out AccessResult result, out IReadOnlyList<string> violations, out _);
        if (plantSkipSeqRecheck)
        {
            Assert.Equal(AccessResult.Ok, result);
            Assert.Contains(violations, v => v.Contains("does not allow writes", StringComparison.Ordinal));
        }
        else
        {
            Assert.Equal(AccessResult.SegmentationFault, result);
            Assert.Empty(violations);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AVmaRetiredUnderASpeculativeFaultIsNotFreedBeforeItsGracePeriod(bool plantSkipGracePeriod)
    {
        Race(new SpeculativeStrategy(), (cpu, mm) =>
        {
            mm.Slab.PlantSkipGracePeriod = plantSkipGracePeriod;
            mm.Unmap(cpu, Base + Page, Page);
            mm.Slab.PlantSkipGracePeriod = false;
        }, out AccessResult result, out IReadOnlyList<string> violations, out long poisoned);

        // Either way the fault's sequence recheck saves the address space; only the freed VMA's fields were read.
        Assert.Equal(AccessResult.SegmentationFault, result);
        if (plantSkipGracePeriod)
        {
            Assert.True(poisoned > 0);
            Assert.Contains(violations, v => v.Contains("retired VMA", StringComparison.Ordinal));
        }
        else
        {
            Assert.Equal(0, poisoned);
            Assert.Empty(violations);
        }
    }

    /// <summary>
    /// The same race without parking, hammered: CPU 0 maps a one-page VMA, publishes its address, and unmaps it, again
    /// and again, never reusing an address (a small VMA at the start of each 2 MiB region keeps the PTE table alive);
    /// CPU 1 keeps writing to whatever address is published. A PTE installed after its VMA was unmapped stays where
    /// it is, outside every VMA, so the checker sees it at the end. With the planted bug this is caught within a few
    /// hundred unmaps (typically milliseconds); without it, a second of hammering leaves nothing.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void HammeringUnmapAgainstSpeculativeFaultsNeverLeavesAPteOutsideEveryVma(bool plantSkipSeqRecheck)
    {
        const int Regions = 16;
        const ulong HammerBase = 0x8000_0000;
        int seed = Environment.TickCount;
        TimeSpan limit = TimeSpan.FromSeconds(plantSkipSeqRecheck ? 3 : 1);
        output.WriteLine($"seed {seed}, plant skip-seq-recheck {plantSkipSeqRecheck}, limit {limit.TotalSeconds} s");
        using Machine machine = TestMachines.Create(2, 64);
        using var mm = new AddressSpace(machine, new SpeculativeStrategy { PlantSkipSeqRecheck = plantSkipSeqRecheck });
        machine.Run(0, cpu =>
        {
            for (int r = 0; r < Regions; r++)
            {
                mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: HammerBase + ((ulong)r << 21));
                mm.Write(cpu, HammerBase + ((ulong)r << 21), 1UL);
            }
        });

        ulong published = 0;
        int stop = 0;
        long unmaps = 0;
        var clock = Stopwatch.StartNew();
        Task faulter = machine.RunAsync(1, cpu =>
        {
            while (Volatile.Read(ref stop) == 0)
            {
                ulong a = Volatile.Read(ref published);
                if (a != 0)
                {
                    _ = mm.TryWrite(cpu, a, 7UL); // Ok or SIGSEGV, depending on the race: both are fine.
                }
            }
        });
        int strays = 0;
        try
        {
            machine.Run(0, cpu =>
            {
                var rng = new Random(seed);

                // Slot 0 of each region is the table-keeping VMA; a slot is reused only after the check below has
                // passed over it, so a stray is always seen before its address is mapped again.
                for (ulong slot = 1; clock.Elapsed < limit && strays == 0; slot = (slot % 511) + 1)
                {
                    foreach (int r in Enumerable.Range(0, Regions).OrderBy(_ => rng.Next()))
                    {
                        ulong a = HammerBase + ((ulong)r << 21) + (slot * Page);
                        mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: a);
                        Volatile.Write(ref published, a);
                        Thread.SpinWait(50);
                        mm.Unmap(cpu, a, Page);
                        unmaps++;
                    }

                    // Only this CPU changes VMAs and frees page tables, so it may look for strays between unmaps.
                    mm.PageTable.ForEachPresent((va, _) => strays += mm.Vmas.Find(va) == null ? 1 : 0);
                }
            });
        }
        finally
        {
            Volatile.Write(ref stop, 1);
            faulter.GetAwaiter().GetResult();
        }

        IReadOnlyList<string> violations = InvariantChecker.FindViolations(mm);
        output.WriteLine($"{unmaps} unmaps in {clock.ElapsedMilliseconds} ms; {violations.Count} violation(s){(violations.Count > 0 ? ", first: " + violations[0] : "")}");
        if (plantSkipSeqRecheck)
        {
            Assert.Contains(violations, v => v.Contains("outside every VMA", StringComparison.Ordinal));
        }
        else
        {
            Assert.Empty(violations);
        }
    }

    /// <summary>
    /// CPU 0 faults the same page in while CPU 1's speculative fault is parked: CPU 1 then finds the PTE present and
    /// usable, and simply retries its access, as Linux does; it used to count an "unsupported" abort and fall back
    /// to the mmap lock, which under-reported speculative success whenever CPUs fault the same pages.
    /// </summary>
    [Fact]
    public void AFaultThatLosesTheInstallRaceRetriesWithoutFallingBackToTheMmapLock()
    {
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, new SpeculativeStrategy());
        machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: Base));
        machine.Run(1, cpu => mm.Write(cpu, Base, 1UL));

        // CPU 0 needs one frame while the pool is closed: keep one aside and put it in CPU 0's cache once the gate is
        // armed (arming drains CPU 1's cache, and an allocator that finds the pool empty drains the other CPUs' caches
        // too, so a frame left in CPU 0's cache before arming would end up in the closed pool).
        long spare = machine.Frames.Allocate(-1, SpecVm.Memory.FrameState.Preparing);
        Cpu cpu1 = machine.Cpu(1);
        long attempts = cpu1.Read(CpuCounter.SpecAttempts);
        CounterSnapshot before = machine.Snapshot();
        Task fault;
        using (var gate = ParkedFault.Arm(machine, 1))
        {
            machine.Run(0, cpu => machine.Frames.Free(cpu.Id, spare)); // Into CPU 0's cache: the pool lock is not taken.
            fault = machine.RunAsync(1, cpu => mm.Write(cpu, Base + Page + 8, 2UL));
            gate.WaitUntilParked(CpuCounter.SpecAttempts, attempts, fault);
            Assert.True(machine.RunAsync(0, cpu => mm.Write(cpu, Base + Page, 3UL)).Wait(TimeSpan.FromSeconds(5)), "CPU 0's fault did not finish while CPU 1 was parked.");
        }

        fault.GetAwaiter().GetResult();
        CounterSnapshot c = machine.Snapshot().Minus(before);
        output.WriteLine($"raced {c[CpuCounter.FaultRaced]}, fallbacks {c[CpuCounter.SpecFallbacks]}, unsupported {c[CpuCounter.SpecAbortUnsupported]}");
        Assert.Equal(0, c[CpuCounter.SpecFallbacks]);
        Assert.Equal(1, c[CpuCounter.FaultRaced]);
        machine.Run(1, cpu =>
        {
            Assert.Equal(3UL, mm.Read<ulong>(cpu, Base + Page));
            Assert.Equal(2UL, mm.Read<ulong>(cpu, Base + Page + 8));
        });
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>
    /// Maps two pages at <see cref="Base"/>, lets CPU 1 touch the first (page tables exist, CPU 1 in the CPU mask),
    /// parks CPU 1 in a write fault on the second, runs <paramref name="change"/> on CPU 0, lets CPU 1 finish, and
    /// reports the write's result, the checker's violations and the poisoned VMA reads.
    /// </summary>
    private void Race(SpeculativeStrategy strategy, Action<Cpu, AddressSpace> change, out AccessResult result, out IReadOnlyList<string> violations, out long poisoned)
    {
        output.WriteLine($"strategy {strategy.Name}, plant skip-seq-recheck {strategy.PlantSkipSeqRecheck}");
        using Machine machine = TestMachines.Create(2, 16);
        using var mm = new AddressSpace(machine, strategy);
        machine.Run(0, cpu => mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: Base));
        machine.Run(1, cpu => mm.Write(cpu, Base, 1UL));
        Cpu cpu1 = machine.Cpu(1);
        long attempts = cpu1.Read(CpuCounter.SpecAttempts);
        long fallbacks = cpu1.Read(CpuCounter.SpecFallbacks);
        Task<AccessResult> fault;
        using (var gate = ParkedFault.Arm(machine, 1))
        {
            fault = RunAsync(machine, 1, cpu => mm.TryWrite(cpu, Base + Page, 0xBADUL));
            gate.WaitUntilParked(CpuCounter.SpecAttempts, attempts, fault);
            Assert.Equal(fallbacks, cpu1.Read(CpuCounter.SpecFallbacks)); // Parked on the speculative path itself.
            Task changed = machine.RunAsync(0, cpu => change(cpu, mm));
            Assert.True(changed.Wait(TimeSpan.FromSeconds(5)), "CPU 0's change did not finish while CPU 1 was parked.");
            changed.GetAwaiter().GetResult();
        }

        result = fault.GetAwaiter().GetResult();
        violations = InvariantChecker.FindViolations(mm);
        poisoned = mm.Slab.PoisonedReads;
        CounterSnapshot c = machine.Snapshot();
        output.WriteLine($"write result {result}; speculative success {c[CpuCounter.SpecSuccess]}, seq-changed aborts {c[CpuCounter.SpecAbortSeqChanged]}, poisoned reads {poisoned}");
        foreach (string v in violations)
        {
            output.WriteLine($"violation: {v}");
        }
    }

    private static Task<T> RunAsync<T>(Machine machine, int cpu, Func<Cpu, T> work)
    {
        T value = default!;
        return machine.RunAsync(cpu, c => value = work(c)).ContinueWith(t =>
        {
            t.GetAwaiter().GetResult();
            return value;
        }, TaskScheduler.Default);
    }
}
