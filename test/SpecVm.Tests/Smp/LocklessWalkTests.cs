using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Tests.Memory;
using Xunit.Abstractions;

namespace SpecVm.Tests.Smp;

public class LocklessWalkTests(ITestOutputHelper output)
{
    private int Seed()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        return seed;
    }

    [Fact]
    public void ALocklessWalkerWithInterruptsDisabledNeverSeesAFreedPageTable()
    {
        int seed = Seed();
        using var m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()))
        {
            LocklessWalkChecker.Report report = LocklessWalkChecker.Run(m, mm, TimeSpan.FromSeconds(1), stopAtFirst: false, seed, output);
            Assert.True(report.Violations == 0, report.FirstViolation);
            Assert.True(report.Cycles > 0 && report.TablesSeen > 0, $"The walker never met a live table: {report}");
        }

        ledger.AssertBalanced();
    }

    [Fact]
    public void TheLocklessWalkCheckerCatchesPageTablesFreedBeforeTheShootdown()
    {
        int seed = Seed();
        using var m = ShootdownTests.NewMachine();
        var ledger = FrameLedger.Begin(m);
        using (var mm = new AddressSpace(m, new MmapLockStrategy()) { PlantFreeTablesBeforeShootdown = true })
        {
            LocklessWalkChecker.Report report = LocklessWalkChecker.Run(m, mm, TimeSpan.FromSeconds(2), stopAtFirst: true, seed, output);
            Assert.True(report.Violations > 0, $"The planted early free was not caught: {report}");
        }

        ledger.AssertBalanced();
    }
}
