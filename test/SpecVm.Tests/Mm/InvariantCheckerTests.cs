using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;
using Xunit.Abstractions;

namespace SpecVm.Tests.Mm;

/// <summary>
/// A checker that can never fail is worth nothing: each invariant is broken here by hand, on an otherwise healthy
/// address space, and the checker must name it. (The planted races in Faults/ break them the real way.)
/// </summary>
[Collection(MachineCollection.Name)]
public sealed unsafe class InvariantCheckerTests(ITestOutputHelper output) : IDisposable
{
    private const ulong Page = 4096;
    private const ulong Base = 0x3000_0000;

    private readonly Machine _machine = TestMachines.Create(1, 16);
    private AddressSpace? _mm;
    private SimFile? _file;

    public void Dispose()
    {
        _mm?.Dispose();
        _file?.Dispose();
        _machine.Dispose();
    }

    [Fact]
    public void AHealthyAddressSpacePasses()
    {
        AddressSpace mm = Healthy();
        Assert.Empty(InvariantChecker.FindViolations(mm, _file!));
        InvariantChecker.Check(mm, _file!);
    }

    [Fact]
    public void TheFrameBalanceIsMachineWideSoEveryLiveAddressSpaceMustBeGiven()
    {
        AddressSpace mm = Healthy();
        using var other = new AddressSpace(_machine, new PerVmaLockStrategy());
        _machine.Run(0, cpu => other.Write(cpu, other.Map(cpu, 4 * Page, Protection.ReadWrite), 5UL));
        Assert.Empty(InvariantChecker.FindViolations(_machine, [mm, other], [_file!]));

        // Leave one out and its frames and tables look leaked.
        Assert.Contains(InvariantChecker.FindViolations(_machine, [mm], [_file!]), v => v.Contains("leaked", StringComparison.Ordinal));
    }

    [Fact]
    public void ALeakedAnonymousFrameIsReported()
    {
        AddressSpace mm = Healthy();
        _machine.Frames.Allocate(-1, FrameState.Anonymous);
        AssertReported(mm, "leaked");
    }

    [Fact]
    public void AFrameLeftPreparingOrAwaitingFlushIsReported()
    {
        AddressSpace mm = Healthy();
        long a = _machine.Frames.Allocate(-1, FrameState.Preparing);
        long b = _machine.Frames.Allocate(-1, FrameState.AwaitingFlush);
        AssertReported(mm, "being prepared");
        AssertReported(mm, "await a TLB flush");
        _machine.Frames.Free(-1, a);
        _machine.Frames.Free(-1, b);
    }

    [Fact]
    public void ALeakedPageTableIsReported()
    {
        AddressSpace mm = Healthy();
        _machine.Frames.Allocate(-1, FrameState.PageTable);
        AssertReported(mm, "a table leaked");
    }

    [Fact]
    public void APteOutsideEveryVmaIsReported()
    {
        AddressSpace mm = Healthy();
        ulong* entry = mm.PageTable.WalkAllocate(-1, Base + (10 * Page), out _);
        long pfn = _machine.Frames.Allocate(-1, FrameState.Anonymous);
        _machine.Memory.Frame(pfn).MapCount = 1;
        *entry = Pte.Make(pfn, Pte.Present | Pte.User | Pte.Writable).Value;
        AssertReported(mm, "outside every VMA");
    }

    [Fact]
    public void APteWiderThanItsVmaIsReported()
    {
        AddressSpace mm = Healthy();
        ulong* entry = mm.PageTable.WalkLockless(Base + Page, out _); // Page 1 of the read-only mapping, present.
        *entry |= Pte.Writable;
        AssertReported(mm, "does not allow writes");
        _machine.Run(0, cpu => mm.Protect(cpu, Base + Page, Page, Protection.None));
        *entry |= Pte.User;
        AssertReported(mm, "PROT_NONE");
    }

    [Fact]
    public void AWritablePageCachePageInAPrivateMappingIsReported()
    {
        AddressSpace mm = Healthy();
        ulong* entry = mm.PageTable.WalkLockless(Base + (4 * Page), out _); // The private file page, read-only.
        *entry |= Pte.Writable;
        AssertReported(mm, "writes would reach the file");
    }

    [Fact]
    public void AWrongMapCountIsReported()
    {
        AddressSpace mm = Healthy();
        ulong* entry = mm.PageTable.WalkLockless(Base, out _);
        ref PageFrame frame = ref _machine.Memory.Frame(new Pte(*entry).Pfn);
        frame.MapCount = 2;
        AssertReported(mm, "map count 2");
        frame.MapCount = 1;
        ulong* shared = mm.PageTable.WalkLockless(Base + (4 * Page), out _);
        _machine.Memory.Frame(new Pte(*shared).Pfn).MapCount++;
        AssertReported(mm, "has map count");
        _machine.Memory.Frame(new Pte(*shared).Pfn).MapCount--;
    }

    [Fact]
    public void AHeldPtlIsReported()
    {
        AddressSpace mm = Healthy();
        mm.PageTable.WalkLockless(Base, out long table);
        _machine.Memory.Frame(table).Ptl.Lock(0, null);
        AssertReported(mm, "PTL");
        _machine.Memory.Frame(table).Ptl.Unlock(0);
    }

    [Fact]
    public void AVmaLeftOddIsReported()
    {
        AddressSpace mm = Healthy();
        Vma v = mm.Vmas.Find(Base)!;
        v.Seq.WriteBegin();
        AssertReported(mm, "odd sequence count");
        v.Seq.WriteEnd();
    }

    [Fact]
    public void CheckThrowsWithEveryViolation()
    {
        AddressSpace mm = Healthy();
        _machine.Frames.Allocate(-1, FrameState.Anonymous);
        _machine.Frames.Allocate(-1, FrameState.PageTable);
        var ex = Assert.Throws<InvariantViolationException>(() => InvariantChecker.Check(mm, _file!));
        output.WriteLine(ex.Message);
        Assert.True(ex.Violations.Count >= 2);
        Assert.All(ex.Violations, v => Assert.Contains(v, ex.Message, StringComparison.Ordinal));
    }

    /// <summary>Anonymous RW page at Base, read-only anonymous page after it, a private file page at Base + 4 pages.</summary>
    private AddressSpace Healthy()
    {
        _file = new SimFile(_machine, 4 * (long)Page);
        _mm = new AddressSpace(_machine, new MmapLockStrategy());
        AddressSpace mm = _mm;
        _machine.Run(0, cpu =>
        {
            mm.Map(cpu, Page, Protection.ReadWrite, fixedAddress: Base);
            mm.Map(cpu, Page, Protection.Read, fixedAddress: Base + Page);
            mm.Map(cpu, Page, Protection.ReadWrite, MappingKind.PrivateFile, _file, 0, Base + (4 * Page));
            mm.Write(cpu, Base, 1UL);
            mm.Read<ulong>(cpu, Base + Page);
            mm.Read<ulong>(cpu, Base + (4 * Page));
        });
        return mm;
    }

    private void AssertReported(AddressSpace mm, string words)
    {
        IReadOnlyList<string> violations = InvariantChecker.FindViolations(mm, _file!);
        foreach (string v in violations)
        {
            output.WriteLine(v);
        }

        Assert.Contains(violations, v => v.Contains(words, StringComparison.Ordinal));
    }
}
