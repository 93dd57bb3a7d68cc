using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;
using SpecVm.Tests.Mm;
using Xunit.Abstractions;

namespace SpecVm.Tests.Faults;

/// <summary>
/// Which faults the per-VMA lock finishes, per kernel version (<see cref="PerVmaLockScope"/>), and how the others are
/// counted: refused by <c>lock_vma_under_rcu</c> (VMA_LOCK_ABORT) or locked and sent back with <c>VM_FAULT_RETRY</c>
/// (VMA_LOCK_RETRY); either way the mmap lock then handles the fault.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed class PerVmaLockScopeTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;
    private const ulong Base = 0x6000_0000;

    /// <summary>What one fault did under the per-VMA lock.</summary>
    public enum Outcome
    {
        Success,
        Abort,
        Retry,
    }

    [Theory]
    [InlineData(PerVmaLockScope.AnonymousOnly, Outcome.Abort)] // 6.4–6.5: !vma_is_anonymous.
    [InlineData(PerVmaLockScope.FileRetry, Outcome.Retry)] // 6.6: not in the page cache, do_read_fault retries.
    [InlineData(PerVmaLockScope.FileFaults, Outcome.Success)] // 6.7+: ->fault under the VMA lock.
    [InlineData(PerVmaLockScope.Full, Outcome.Success)]
    public void AColdPrivateFileReadFault(PerVmaLockScope scope, Outcome expected) =>
        AssertFileFault(scope, MappingKind.PrivateFile, write: false, cached: false, expected);

    [Theory]
    [InlineData(PerVmaLockScope.AnonymousOnly, Outcome.Abort)]
    [InlineData(PerVmaLockScope.FileRetry, Outcome.Success)] // 6.6: fault-around maps a cached page under the VMA lock.
    [InlineData(PerVmaLockScope.FileFaults, Outcome.Success)]
    [InlineData(PerVmaLockScope.Full, Outcome.Success)]
    public void ACachedSharedFileReadFault(PerVmaLockScope scope, Outcome expected) =>
        AssertFileFault(scope, MappingKind.SharedFile, write: false, cached: true, expected);

    [Theory]
    [InlineData(PerVmaLockScope.AnonymousOnly, Outcome.Abort)]
    [InlineData(PerVmaLockScope.FileRetry, Outcome.Retry)] // 6.6: do_shared_fault retries.
    [InlineData(PerVmaLockScope.FileFaults, Outcome.Success)]
    [InlineData(PerVmaLockScope.Full, Outcome.Success)]
    public void ASharedFileWriteFault(PerVmaLockScope scope, Outcome expected) =>
        AssertFileFault(scope, MappingKind.SharedFile, write: true, cached: true, expected);

    [Theory]
    [InlineData(PerVmaLockScope.AnonymousOnly, Outcome.Abort, Outcome.Abort)]
    [InlineData(PerVmaLockScope.FileRetry, Outcome.Retry, Outcome.Retry)] // 6.6: do_cow_fault always retries.
    [InlineData(PerVmaLockScope.FileFaults, Outcome.Retry, Outcome.Success)] // 6.7+: vmf_anon_prepare, then the anon_vma exists.
    [InlineData(PerVmaLockScope.Full, Outcome.Retry, Outcome.Success)]
    public void PrivateFileCopyOnWriteFaultsNeedTheAnonVma(PerVmaLockScope scope, Outcome first, Outcome second)
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var file = new SimFile(machine, 16 * (long)Page);
        using var mm = new AddressSpace(machine, new PerVmaLockStrategy(), new AddressSpaceOptions { PerVmaLockScope = scope });
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, MappingKind.PrivateFile, file, fixedAddress: Base);
            Assert.Equal(first, Fault(cpu, () => mm.Write(cpu, a, 1UL)));
            Assert.True(mm.Vmas.Find(a)!.HasAnonVma); // The mmap-lock path's copy-on-write gave it one.
            Assert.Equal(second, Fault(cpu, () => mm.Write(cpu, a + Page, 2UL)));
            Assert.Equal(1UL, mm.Read<ulong>(cpu, a));
        });
        TestMachines.AssertNoViolations(mm, file);
    }

    [Theory]
    [InlineData(PerVmaLockScope.AnonymousOnly)]
    [InlineData(PerVmaLockScope.FileRetry)]
    [InlineData(PerVmaLockScope.FileFaults)]
    public void BeforeLinux610TheFirstFaultInAFreshAnonymousVmaIsRefusedByTheLookup(PerVmaLockScope scope)
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new PerVmaLockStrategy(), new AddressSpaceOptions { PerVmaLockScope = scope });
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, fixedAddress: Base);
            Assert.Equal(Outcome.Abort, Fault(cpu, () => mm.Read<ulong>(cpu, a))); // No anon_vma, even for a read.
            Assert.False(mm.Vmas.Find(a)!.HasAnonVma); // The zero page needs none.
            Assert.Equal(Outcome.Abort, Fault(cpu, () => mm.Write(cpu, a + Page, 1UL))); // The mmap lock allocates it.
            Assert.True(mm.Vmas.Find(a)!.HasAnonVma);
            Assert.Equal(Outcome.Success, Fault(cpu, () => mm.Write(cpu, a + (2 * Page), 2UL)));
        });
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void FromLinux610TheFirstAnonymousWriteRetriesAndTheSecondSucceeds()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new PerVmaLockStrategy()); // Full is the default.
        Assert.Equal(PerVmaLockScope.Full, mm.Options.PerVmaLockScope);
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, fixedAddress: Base);
            Assert.Equal(Outcome.Success, Fault(cpu, () => mm.Read<ulong>(cpu, a))); // Zero page: no anon_vma needed.
            Assert.False(mm.Vmas.Find(a)!.HasAnonVma);
            Assert.Equal(Outcome.Retry, Fault(cpu, () => mm.Write(cpu, a + Page, 1UL))); // vmf_anon_prepare.
            Assert.True(mm.Vmas.Find(a)!.HasAnonVma);
            Assert.Equal(Outcome.Success, Fault(cpu, () => mm.Write(cpu, a + (2 * Page), 2UL)));
            Assert.Equal(Outcome.Success, Fault(cpu, () => mm.Write(cpu, a, 3UL))); // Copy of the zero page.
        });
        TestMachines.AssertNoViolations(mm);
    }

    [Fact]
    public void SplitAndMergedVmasKeepTheAnonVma()
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var mm = new AddressSpace(machine, new PerVmaLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 8 * Page, Protection.ReadWrite, fixedAddress: Base);
            mm.Write(cpu, a, 1UL); // Retried under the mmap lock, which gives the VMA its anon_vma.
            mm.Protect(cpu, a + (2 * Page), 2 * Page, Protection.Read); // Split in three.
            Assert.True(mm.Vmas.Find(a + (2 * Page))!.HasAnonVma);
            Assert.True(mm.Vmas.Find(a + (6 * Page))!.HasAnonVma);
            mm.Protect(cpu, a + (2 * Page), 2 * Page, Protection.ReadWrite); // Merged back into one.
            Assert.True(mm.Vmas.Find(a + (7 * Page))!.HasAnonVma);
            mm.Unmap(cpu, a + (4 * Page), Page); // Split by munmap.
            Assert.True(mm.Vmas.Find(a + (5 * Page))!.HasAnonVma);

            ulong fresh = mm.Map(cpu, 2 * Page, Protection.ReadWrite, fixedAddress: a + (8 * Page)); // Merges with the tail.
            Assert.True(mm.Vmas.Find(fresh)!.HasAnonVma);
            Assert.Equal(Outcome.Success, Fault(cpu, () => mm.Write(cpu, fresh, 4UL)));
        });
        TestMachines.AssertNoViolations(mm);
    }

    /// <summary>
    /// The two-CPU stress (faults against map, unmap, protect and zap, checked against oracles and the invariants) with
    /// each scope, so that the abort and retry paths, and anon_vma inheritance, meet the VMA edits.
    /// </summary>
    [Theory]
    [InlineData(PerVmaLockScope.AnonymousOnly)]
    [InlineData(PerVmaLockScope.FileRetry)]
    [InlineData(PerVmaLockScope.FileFaults)]
    [InlineData(PerVmaLockScope.Full)]
    public void EveryScopeKeepsEveryByteUnderConcurrentVmaEdits(PerVmaLockScope scope)
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}, scope {scope}");
        new ConcurrentStress(seed, TimeSpan.FromSeconds(1)).Run(new PerVmaLockStrategy(), output, scope);
    }

    [Fact]
    public void AnUndefinedScopeIsRefusedNamingTheOption()
    {
        using Machine machine = TestMachines.Create(1, 16);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(machine, new PerVmaLockStrategy(), new AddressSpaceOptions { PerVmaLockScope = (PerVmaLockScope)42 }));
        Assert.Equal(nameof(AddressSpaceOptions.PerVmaLockScope), e.ParamName);
    }

    private static void AssertFileFault(PerVmaLockScope scope, MappingKind kind, bool write, bool cached, Outcome expected)
    {
        using Machine machine = TestMachines.Create(1, 16);
        using var file = new SimFile(machine, 16 * (long)Page);
        if (cached)
        {
            file.Write(0, new byte[8]); // pwrite reads the page into the page cache.
        }

        using var mm = new AddressSpace(machine, new PerVmaLockStrategy(), new AddressSpaceOptions { PerVmaLockScope = scope });
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, kind, file, fixedAddress: Base);
            Assert.Equal(expected, Fault(cpu, () =>
            {
                if (write)
                {
                    mm.Write(cpu, a, 7UL);
                }
                else
                {
                    mm.Read<ulong>(cpu, a);
                }
            }));
        });
        TestMachines.AssertNoViolations(mm, file);
    }

    /// <summary>Runs one access that takes exactly one fault and says how the per-VMA lock counted it.</summary>
    private static Outcome Fault(Cpu cpu, Action access)
    {
        long faults = cpu.Read(CpuCounter.Faults);
        long success = cpu.Read(CpuCounter.VmaLockSuccess);
        long abort = cpu.Read(CpuCounter.VmaLockAbort);
        long retry = cpu.Read(CpuCounter.VmaLockRetry);
        long mmap = cpu.Read(CpuCounter.MmapLockFaults);
        access();
        Assert.Equal(1, cpu.Read(CpuCounter.Faults) - faults);
        long s = cpu.Read(CpuCounter.VmaLockSuccess) - success;
        long a = cpu.Read(CpuCounter.VmaLockAbort) - abort;
        long r = cpu.Read(CpuCounter.VmaLockRetry) - retry;
        long m = cpu.Read(CpuCounter.MmapLockFaults) - mmap;
        Assert.Equal(1, s + a + r);
        Assert.Equal(s == 1 ? 0 : 1, m); // Abort and retry both finish under the mmap lock.
        return s == 1 ? Outcome.Success : a == 1 ? Outcome.Abort : Outcome.Retry;
    }
}
