using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Tests.Mm;

/// <summary>
/// Bad arguments are refused with an <see cref="ArgumentException"/> that names the argument, before anything
/// changes: afterwards the VMAs are as they were, no frame leaked, no lock is left held and the invariants hold.
/// </summary>
[Collection(MachineCollection.Name)]
public sealed class AddressSpaceArgumentTests : IDisposable
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;

    private readonly Machine _machine = TestMachines.Create(2, 16);
    private readonly AddressSpace _mm;
    private readonly SimFile _file;
    private readonly SimFile _readOnlyFile;

    public AddressSpaceArgumentTests()
    {
        _mm = new AddressSpace(_machine, new SpeculativeStrategy());
        _file = new SimFile(_machine, 4 * (long)Page);
        _readOnlyFile = new SimFile(_machine, 4 * (long)Page, writable: false);
        _machine.Run(0, cpu =>
        {
            _mm.Map(cpu, 4 * Page, Protection.ReadWrite, fixedAddress: Base);
            _mm.Map(cpu, 2 * Page, Protection.Read, MappingKind.SharedFile, _readOnlyFile, 0, Base + (8 * Page));
            _mm.Write(cpu, Base, 42UL);
        });
    }

    public void Dispose()
    {
        _mm.Dispose();
        _file.Dispose();
        _readOnlyFile.Dispose();
        _machine.Dispose();
    }

    public static TheoryData<string> BadMaps => new()
    {
        "zero length", "unaligned length", "unaligned address", "overlapping fixed mapping", "address below mmap_min_addr",
        "address above user space", "range running past user space", "file offset beyond the file", "unaligned file offset",
        "negative file offset", "shared writable mapping of a read-only file", "anonymous mapping with a file",
        "file mapping without a file", "unknown protection bits",
    };

    [Theory]
    [MemberData(nameof(BadMaps))]
    public void BadMapArgumentsAreRefusedByNameAndChangeNothing(string what)
    {
        (string param, Action<Cpu> map) = what switch
        {
            "zero length" => ("length", (Action<Cpu>)(cpu => _mm.Map(cpu, 0, Protection.Read))),
            "unaligned length" => ("length", cpu => _mm.Map(cpu, Page + 1, Protection.Read)),
            "unaligned address" => ("fixedAddress", cpu => _mm.Map(cpu, Page, Protection.Read, fixedAddress: Base + (20 * Page) + 8)),
            "overlapping fixed mapping" => ("fixedAddress", cpu => _mm.Map(cpu, 2 * Page, Protection.Read, fixedAddress: Base + (3 * Page))),
            "address below mmap_min_addr" => ("fixedAddress", cpu => _mm.Map(cpu, Page, Protection.Read, fixedAddress: 0x1000)),
            "address above user space" => ("fixedAddress", cpu => _mm.Map(cpu, Page, Protection.Read, fixedAddress: PageTable.UserTop)),
            "range running past user space" => ("fixedAddress", cpu => _mm.Map(cpu, 2 * Page, Protection.Read, fixedAddress: PageTable.UserTop - Page)),
            "file offset beyond the file" => ("fileOffset", cpu => _mm.Map(cpu, 2 * Page, Protection.Read, MappingKind.PrivateFile, _file, 3 * (long)Page)),
            "unaligned file offset" => ("fileOffset", cpu => _mm.Map(cpu, Page, Protection.Read, MappingKind.PrivateFile, _file, 100)),
            "negative file offset" => ("fileOffset", cpu => _mm.Map(cpu, Page, Protection.Read, MappingKind.SharedFile, _file, -(long)Page)),
            "shared writable mapping of a read-only file" => ("protection", cpu => _mm.Map(cpu, Page, Protection.ReadWrite, MappingKind.SharedFile, _readOnlyFile)),
            "anonymous mapping with a file" => ("file", cpu => _mm.Map(cpu, Page, Protection.Read, MappingKind.Anonymous, _file)),
            "file mapping without a file" => ("file", cpu => _mm.Map(cpu, Page, Protection.Read, MappingKind.PrivateFile)),
            "unknown protection bits" => ("protection", cpu => _mm.Map(cpu, Page, (Protection)8)),
            _ => throw new ArgumentOutOfRangeException(nameof(what)),
        };
        AssertRefused(param, map);
    }

    [Theory]
    [InlineData("zero length")]
    [InlineData("unaligned length")]
    [InlineData("unaligned address")]
    [InlineData("address out of range")]
    public void BadUnmapArgumentsAreRefusedByName(string what)
    {
        (string param, Action<Cpu> unmap) = what switch
        {
            "zero length" => ("length", (Action<Cpu>)(cpu => _mm.Unmap(cpu, Base, 0))),
            "unaligned length" => ("length", cpu => _mm.Unmap(cpu, Base, 100)),
            "unaligned address" => ("start", cpu => _mm.Unmap(cpu, Base + 12, Page)),
            _ => ("start", cpu => _mm.Unmap(cpu, PageTable.UserTop, Page)),
        };
        AssertRefused(param, unmap);
    }

    [Fact]
    public void UnmappingUnmappedOrPartlyMappedRangesIsAllowed()
    {
        _machine.Run(0, cpu =>
        {
            _mm.Unmap(cpu, Base + (100 * Page), 16 * Page); // Nothing there.
            _mm.Unmap(cpu, Base + (3 * Page), 3 * Page); // The last page of a mapping and two holes.
            Assert.Equal(AccessResult.SegmentationFault, _mm.TryRead(cpu, Base + (3 * Page), out ulong _));
            Assert.Equal(42UL, _mm.Read<ulong>(cpu, Base));
        });
        TestMachines.AssertNoViolations(_mm, _file, _readOnlyFile);
    }

    [Theory]
    [InlineData("range not fully mapped", "start")]
    [InlineData("range entirely unmapped", "start")]
    [InlineData("shared writable on a read-only file", "protection")]
    [InlineData("unaligned address", "start")]
    [InlineData("zero length", "length")]
    [InlineData("unknown protection bits", "protection")]
    [InlineData("address out of range", "start")]
    public void BadProtectArgumentsAreRefusedByNameAndChangeNothing(string what, string param)
    {
        AssertRefused(param, what switch
        {
            "range not fully mapped" => cpu => _mm.Protect(cpu, Base + (2 * Page), 4 * Page, Protection.Read),
            "range entirely unmapped" => cpu => _mm.Protect(cpu, Base + (100 * Page), Page, Protection.Read),
            "shared writable on a read-only file" => cpu => _mm.Protect(cpu, Base + (8 * Page), Page, Protection.ReadWrite),
            "unaligned address" => cpu => _mm.Protect(cpu, Base + 1, Page, Protection.Read),
            "zero length" => cpu => _mm.Protect(cpu, Base, 0, Protection.Read),
            "unknown protection bits" => cpu => _mm.Protect(cpu, Base, Page, (Protection)16),
            _ => (Action<Cpu>)(cpu => _mm.Protect(cpu, 0, Page, Protection.Read)),
        });

        // The refused Protect left the data and the protection as they were.
        _machine.Run(0, cpu => _mm.Write(cpu, Base + (2 * Page), 7UL));
    }

    [Fact]
    public void SystemCallFailuresCarryLinuxsErrno()
    {
        // mprotect over a hole: ENOMEM, typed, with the hole's address (no message parsing needed).
        var hole = _machine.Run(0, cpu => Assert.Throws<UnmappedRangeException>(() => _mm.Protect(cpu, Base + (2 * Page), 4 * Page, Protection.Read)));
        Assert.Equal(Errno.ENOMEM, hole.Errno);
        Assert.Equal("start", hole.ParamName);
        Assert.True(hole.Hole > Base + (2 * Page) && hole.Hole < Base + (6 * Page), $"hole at 0x{hole.Hole:x}");

        // mmap with no room left: ENOMEM as well, and nothing changed.
        using var mm = new AddressSpace(_machine, new MmapLockStrategy());
        _machine.Run(0, cpu =>
        {
            mm.Map(cpu, PageTable.UserTop - AddressSpace.MinAddress, Protection.Read, fixedAddress: AddressSpace.MinAddress); // All of user space, lazily.
            var full = Assert.Throws<AddressSpaceFullException>(() => mm.Map(cpu, Page, Protection.Read));
            Assert.Equal(Errno.ENOMEM, ((ISystemCallError)full).Errno);
            Assert.Equal((ulong)Page, full.Length);
            Assert.Single(mm.Vmas.Snapshot());
        });
    }

    [Theory]
    [InlineData("range not fully mapped", "start")]
    [InlineData("unaligned length", "length")]
    [InlineData("address out of range", "start")]
    public void BadDontNeedArgumentsAreRefusedByName(string what, string param) =>
        AssertRefused(param, what switch
        {
            "range not fully mapped" => cpu => _mm.DontNeed(cpu, Base, 6 * Page),
            "unaligned length" => cpu => _mm.DontNeed(cpu, Base, Page - 1),
            _ => (Action<Cpu>)(cpu => _mm.DontNeed(cpu, PageTable.UserTop - Page, 2 * Page)),
        });

    [Fact]
    public void BadAccessesAreSegmentationFaultsOrArgumentErrorsNeverCrashes()
    {
        _machine.Run(1, cpu =>
        {
            Assert.Equal(AccessResult.SegmentationFault, _mm.TryRead(cpu, PageTable.UserTop, out ulong _)); // Non-canonical.
            Assert.Equal(AccessResult.SegmentationFault, _mm.TryRead(cpu, ulong.MaxValue - 7, out ulong _));
            Assert.Equal(AccessResult.SegmentationFault, _mm.TryWrite(cpu, 0, 1UL)); // NULL.
            Assert.Equal(AccessResult.SegmentationFault, _mm.TryWrite(cpu, Base + (8 * Page), 1UL)); // Read-only shared.
            Assert.Throws<SegmentationFaultException>(() => _mm.Read<ulong>(cpu, Base + (50 * Page)));
            ArgumentException crossing = Assert.ThrowsAny<ArgumentException>(() => _mm.TryRead(cpu, Base + Page - 4, out ulong _));
            Assert.Equal("address", crossing.ParamName);
        });
        TestMachines.AssertNoViolations(_mm, _file, _readOnlyFile);
    }

    [Fact]
    public void AFileOfZeroOrUnalignedLengthIsRefused()
    {
        Assert.Equal("length", Assert.ThrowsAny<ArgumentException>(() => new SimFile(_machine, 0)).ParamName);
        Assert.Equal("length", Assert.ThrowsAny<ArgumentException>(() => new SimFile(_machine, 100)).ParamName);
    }

    /// <summary>
    /// Runs <paramref name="call"/> on CPU 0, expects an ArgumentException naming <paramref name="param"/>, then checks
    /// that nothing changed: same VMAs, invariants hold, and CPU 1 can still take the mmap lock (no lock leaked).
    /// </summary>
    private void AssertRefused(string param, Action<Cpu> call)
    {
        string before = string.Join(", ", _mm.Vmas.Snapshot());
        long freeBefore = _machine.Memory.Census().Free;
        ArgumentException ex = _machine.Run(0, cpu => Assert.ThrowsAny<ArgumentException>(() => call(cpu)));
        Assert.Equal(param, ex.ParamName);
        Assert.False(string.IsNullOrWhiteSpace(ex.Message));
        Assert.Equal(before, string.Join(", ", _mm.Vmas.Snapshot()));
        Assert.Equal(freeBefore, _machine.Memory.Census().Free);
        TestMachines.AssertNoViolations(_mm, _file, _readOnlyFile);
        Task other = _machine.RunAsync(1, cpu =>
        {
            ulong a = _mm.Map(cpu, Page, Protection.ReadWrite);
            _mm.Write(cpu, a, 1UL);
            _mm.Unmap(cpu, a, Page);
            Assert.Equal(42UL, _mm.Read<ulong>(cpu, Base));
        });
        Assert.True(other.Wait(TimeSpan.FromSeconds(5)), "The mmap lock was left held after a refused call.");
        other.GetAwaiter().GetResult();
        TestMachines.AssertNoViolations(_mm, _file, _readOnlyFile);
    }
}
