using System.Diagnostics;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Mm;
using Xunit.Abstractions;

namespace SpecVm.Tests.Faults;

/// <summary>
/// The deadlock of the LWN article: CPU 0 zaps pages (Unmap, or DontNeed) and, its gather full, flushes TLBs while
/// holding the PTE table's PTL; CPU 1 faults speculatively in a neighbouring VMA under the same PTL with interrupts
/// disabled. Spinning on the PTL, CPU 1 never answers CPU 0's flush IPI, CPU 0 never releases the PTL, and the
/// hard-lockup watchdog fires. With the trylock (the fix the 2017 series made), the same scenario only counts
/// ptl-busy aborts and falls back.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed class PtlDeadlockTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;

    /// <summary>2 MiB aligned: both VMAs below live in one PTE table.</summary>
    private const ulong Base = 0x7000_0000;

    /// <summary>CPU 1's VMA: never changed, so its faults stay speculative.</summary>
    private const ulong FaulterStart = Base;

    private const ulong FaulterPages = 64;

    /// <summary>CPU 0's VMA, one page-hole away (no merge, so CPU 1's VMA is untouched) in the same PTE table.</summary>
    private const ulong ZapperStart = Base + ((FaulterPages + 1) * Page);

    private const ulong ZapperPages = 128;

    /// <summary>How long the trylock scenario runs; the spinning one stops at the lockup (about one watchdog period).</summary>
    private static readonly TimeSpan RunFor = TimeSpan.FromSeconds(2);

    /// <summary>The most the spinning scenario may run before the lockup must have happened.</summary>
    private static readonly TimeSpan LockupWithin = TimeSpan.FromSeconds(6);

    [Theory]
    [InlineData("unmap")]
    [InlineData("dontneed")]
    public void SpinningOnThePtlWithInterruptsOffDeadlocksAgainstAFlushUnderThePtlAndTheWatchdogFires(string zap)
    {
        (Exception? faulterError, CounterSnapshot c, TimeSpan elapsed) = RunScenario(spinOnPtl: true, zap);
        output.WriteLine($"faulter failed after {elapsed.TotalSeconds:F2} s with: {faulterError?.Message}");
        var cpuError = Assert.IsType<CpuException>(faulterError);
        var lockup = Assert.IsType<HardLockupException>(cpuError.InnerException);
        Assert.Equal(1, cpuError.CpuId);
        Assert.Equal(1, lockup.CpuId);
        Assert.True(lockup.Spinning >= TimeSpan.FromSeconds(1));
        Assert.True(elapsed < LockupWithin);
    }

    [Theory]
    [InlineData("unmap")]
    [InlineData("dontneed")]
    public void TrylockOnThePtlFallsBackAndTheSameScenarioNeverLocksUp(string zap)
    {
        (Exception? faulterError, CounterSnapshot c, TimeSpan elapsed) = RunScenario(spinOnPtl: false, zap);
        Assert.Null(faulterError);

        // The hazard was really there: the speculative fault met the PTL held (by the zap) and fell back.
        Assert.True(c[CpuCounter.SpecAbortPtlBusy] > 0, "The scenario never met a busy PTL; it tests nothing.");
        Assert.True(elapsed >= RunFor);
    }

    private (Exception? FaulterError, CounterSnapshot Counters, TimeSpan Elapsed) RunScenario(bool spinOnPtl, string zap)
    {
        using Machine machine = TestMachines.Create(2, 64, watchdog: TimeSpan.FromSeconds(1));
        var strategy = new SpeculativeStrategy { SpinOnPtl = spinOnPtl };
        output.WriteLine($"strategy {strategy.Name}, zap by {zap}, zap batch 4 pages, watchdog 1 s, run for up to {(spinOnPtl ? LockupWithin : RunFor).TotalSeconds} s");
        var mm = new AddressSpace(machine, strategy, new AddressSpaceOptions { ZapBatchPages = 4 });
        machine.Run(0, cpu =>
        {
            mm.Map(cpu, FaulterPages * Page, Protection.ReadWrite, fixedAddress: FaulterStart);
            if (zap == "dontneed")
            {
                mm.Map(cpu, ZapperPages * Page, Protection.ReadWrite, fixedAddress: ZapperStart);
            }
        });

        // CPU 1 touches its VMA first: the page tables exist and CPU 1 is in the address space's CPU mask.
        machine.Run(1, cpu => mm.Write(cpu, FaulterStart, 1UL));
        TimeSpan runFor = spinOnPtl ? LockupWithin : RunFor;
        var clock = Stopwatch.StartNew();
        int stop = 0;
        Task zapper = machine.RunAsync(0, cpu =>
        {
            while (Volatile.Read(ref stop) == 0 && clock.Elapsed < runFor)
            {
                if (zap == "unmap")
                {
                    mm.Map(cpu, ZapperPages * Page, Protection.ReadWrite, fixedAddress: ZapperStart);
                }

                for (ulong i = 0; i < ZapperPages; i++)
                {
                    mm.Write(cpu, ZapperStart + (i * Page), i);
                }

                if (zap == "unmap")
                {
                    mm.Unmap(cpu, ZapperStart, ZapperPages * Page);
                }
                else
                {
                    mm.DontNeed(cpu, ZapperStart, ZapperPages * Page);
                }

                // Zap CPU 1's pages too, so that it keeps faulting (DontNeed flushes under the PTL the same way).
                mm.DontNeed(cpu, FaulterStart, FaulterPages * Page);
            }
        });
        Task faulter = machine.RunAsync(1, cpu =>
        {
            while (Volatile.Read(ref stop) == 0 && clock.Elapsed < runFor)
            {
                for (ulong i = 0; i < FaulterPages; i++)
                {
                    mm.Write(cpu, FaulterStart + (i * Page), i);
                }
            }
        });

        Exception? faulterError = null;
        try
        {
            faulter.GetAwaiter().GetResult();
        }
        catch (CpuException ex)
        {
            faulterError = ex;
        }

        TimeSpan elapsed = clock.Elapsed;
        Volatile.Write(ref stop, 1);

        // Once the watchdog has unwound CPU 1's fault (interrupts back on, the flush IPI answered), CPU 0 goes on.
        Assert.True(zapper.Wait(TimeSpan.FromSeconds(10)), "CPU 0 stayed stuck in its shootdown.");
        zapper.GetAwaiter().GetResult();
        CounterSnapshot c = machine.Snapshot();
        output.WriteLine($"ptl-busy aborts {c[CpuCounter.SpecAbortPtlBusy]}, speculative success {c[CpuCounter.SpecSuccess]}, shootdowns {c[CpuCounter.Shootdowns]}, IPIs sent {c[CpuCounter.IpisSent]}, served {c[CpuCounter.IpisServed]}");

        // Nothing leaked, even through the lockup.
        TestMachines.AssertNoViolations(mm);
        mm.Dispose();
        return (faulterError, c, elapsed);
    }
}
