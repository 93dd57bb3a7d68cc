using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Simulation;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Tests.Mm;

/// <summary>Kernel profiles: the presets' settings, their lookup, and that a run uses and records the one it was given.</summary>
public class KernelProfileTests
{
    [Fact]
    public void TheDefaultIsTheNewestAndNamesAreUnique()
    {
        Assert.Same(KernelProfile.Linux615, KernelProfile.Default);
        Assert.Same(KernelProfile.Default, KernelProfile.All[^1]);
        Assert.Equal(KernelProfile.All.Count, KernelProfile.Names.Distinct(StringComparer.OrdinalIgnoreCase).Count());
        Assert.Same(KernelProfile.Linux66, KernelProfile.TryGet("6.6"));
        Assert.Same(KernelProfile.Linux414Spf, KernelProfile.TryGet("4.14-SPF"));
        Assert.Null(KernelProfile.TryGet("2.6"));
        Assert.Throws<ArgumentNullException>(() => KernelProfile.TryGet(null!));
        Assert.Throws<ArgumentNullException>(() => KernelProfile.Default.ApplyTo(null!));
    }

    [Fact]
    public void OnlyThe414ProfileHoldsTheWriteLockThroughMunmapAndLacksPerVmaLocks()
    {
        Assert.False(KernelProfile.Linux414Spf.CreateAddressSpaceOptions().DowngradeOnUnmap);
        Assert.False(KernelProfile.Linux414Spf.PerVmaLocks);
        foreach (KernelProfile p in new[] { KernelProfile.Linux66, KernelProfile.Linux615 })
        {
            Assert.True(p.CreateAddressSpaceOptions().DowngradeOnUnmap, p.Name);
            Assert.True(p.PerVmaLocks, p.Name);
        }

        Assert.Equal(PerVmaLockScope.AnonymousOnly, KernelProfile.Linux414Spf.CreateAddressSpaceOptions().PerVmaLockScope);
        Assert.Equal(PerVmaLockScope.FileRetry, KernelProfile.Linux66.CreateAddressSpaceOptions().PerVmaLockScope);
        Assert.Equal(PerVmaLockScope.Full, KernelProfile.Linux615.CreateAddressSpaceOptions().PerVmaLockScope);

        // Each call gives fresh options: changing one run's cannot change the preset.
        AddressSpaceOptions a = KernelProfile.Default.CreateAddressSpaceOptions();
        a.DowngradeOnUnmap = false;
        Assert.True(KernelProfile.Default.CreateAddressSpaceOptions().DowngradeOnUnmap);
    }

    [Fact]
    public void ProfilesSetTheMachinesLruBatchAndTheDefaultsAreTheNewestKernels()
    {
        var expected = new Dictionary<KernelProfile, int> { [KernelProfile.Linux414Spf] = 14, [KernelProfile.Linux66] = 15, [KernelProfile.Linux615] = 31 };
        foreach ((KernelProfile profile, int batch) in expected)
        {
            var options = new MachineOptions { MemcgDepth = 2 };
            profile.ApplyTo(options);
            Assert.Equal(batch, options.FolioBatchSize);
            Assert.Equal(63, options.PcpBatch);
            Assert.Equal(378, options.PcpHigh);
            Assert.Equal(2, options.MemcgDepth); // The system's, not the kernel's: left alone.
        }

        var plain = new MachineOptions();
        var newest = new MachineOptions();
        KernelProfile.Default.ApplyTo(newest);
        Assert.Equal(plain.FolioBatchSize, newest.FolioBatchSize);
        Assert.Equal(plain.PcpBatch, newest.PcpBatch);
        Assert.Equal(plain.PcpHigh, newest.PcpHigh);
    }

    [Fact]
    public void TheDefaultAddressSpaceOptionsAreTheDefaultProfiles()
    {
        var plain = new AddressSpaceOptions();
        AddressSpaceOptions profile = KernelProfile.Default.CreateAddressSpaceOptions();
        Assert.Equal(plain.DowngradeOnUnmap, profile.DowngradeOnUnmap);
        Assert.Equal(plain.ZapBatchPages, profile.ZapBatchPages);
        Assert.Equal(plain.PerVmaLockScope, profile.PerVmaLockScope);
        Assert.Equal(plain.UseZeroPage, profile.UseZeroPage);
    }

    [Theory]
    [InlineData("4.14-spf", false)]
    [InlineData("6.15", true)]
    public void ARunUsesAndRecordsItsProfile(string name, bool downgrade)
    {
        KernelProfile profile = KernelProfile.TryGet(name)!;
        var workload = new PageFault1(1L << 20);
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [workload],
            Strategies = [StrategyCatalog.TryCreate("mmap-lock")!, StrategyCatalog.TryCreate("per-vma-lock")!],
            ThreadCounts = [1],
            Repeats = 1,
            KernelProfile = profile,
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.05), Duration = TimeSpan.FromMilliseconds(0.1) },
        }).Run();

        Assert.Equal(name, r.Settings.KernelProfile);
        Assert.Equal(downgrade ? "true" : "false", r.Settings.KernelProfileSettings!["downgradeOnUnmap"]);
        Assert.Equal(downgrade, r.Settings.DowngradeOnUnmap);
        Assert.Equal(downgrade, workload.AddressSpaceOptions!.DowngradeOnUnmap); // What the workload's address spaces were built with.
        Assert.Equal(!profile.PerVmaLocks, r.Warnings.Any(w => w.Contains("no per-VMA locks", StringComparison.Ordinal)));
    }

    [Fact]
    public void ExplicitOptionsWinOverTheProfile()
    {
        var workload = new PageFault1(1L << 20);
        ScalingResult r = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [workload],
            Strategies = [StrategyCatalog.TryCreate("mmap-lock")!],
            ThreadCounts = [1],
            Repeats = 1,
            KernelProfile = KernelProfile.Linux414Spf,
            AddressSpaceOptions = new AddressSpaceOptions { DowngradeOnUnmap = true },
            VirtualTime = new VirtualTimeOptions { Band = false, Warmup = TimeSpan.FromMilliseconds(0.05), Duration = TimeSpan.FromMilliseconds(0.1) },
        }).Run();
        Assert.True(r.Settings.DowngradeOnUnmap);
        Assert.True(workload.AddressSpaceOptions!.DowngradeOnUnmap);
        Assert.Equal("4.14-spf", r.Settings.KernelProfile);
    }

    [Fact]
    public void ANullProfileIsRefusedByName()
    {
        var e = Assert.Throws<ArgumentException>(() => new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new PageFault1(1L << 20)],
            Strategies = [new MmapLockStrategy()],
            KernelProfile = null!,
        }));
        Assert.Contains("KernelProfile", e.Message, StringComparison.Ordinal);
    }
}
