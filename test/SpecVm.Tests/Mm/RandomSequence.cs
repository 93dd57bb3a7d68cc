using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Mm;

/// <summary>
/// Drives one address space with a seeded random sequence of Map (anonymous, private file, shared file; fixed and
/// not), Unmap (partial, splitting, over holes), Protect, DontNeed, reads, writes and file I/O on one CPU, checks every
/// result against <see cref="MmOracle"/> as it goes, and returns a trace of what happened (to compare strategies).
/// </summary>
internal sealed class RandomSequence
{
    /// <summary>A window of fixed-address mappings that straddles a 2 MiB boundary (two PTE tables).</summary>
    public const ulong Window = 0x2000_0000 - (48 * Page);

    public const int WindowPages = 96;

    private const ulong Page = MmOracle.PageSize;

    private static readonly Protection[] Protections = [Protection.None, Protection.Read, Protection.ReadWrite];

    private readonly Random _rng;
    private readonly MmOracle _oracle = new();
    private readonly List<string> _trace = [];
    private readonly List<(ulong Start, ulong Length)> _floating = [];
    private MmOracle.FileModel[] _files = [];
    private AddressSpace _mm = null!;

    private RandomSequence(int seed) => _rng = new Random(seed);

    public static List<string> Run(FaultStrategy strategy, int seed, int steps)
    {
        var run = new RandomSequence(seed);
        using Machine machine = TestMachines.Create(1, 32);
        long freeBefore = machine.Memory.Census().Free;
        run._files =
        [
            new(new SimFile(machine, 16 * (long)Page)),
            new(new SimFile(machine, 16 * (long)Page)),
            new(new SimFile(machine, 8 * (long)Page, writable: false)),
        ];
        SimFile[] files = run._files.Select(f => f.File).ToArray();
        foreach (MmOracle.FileModel f in run._files)
        {
            run._rng.NextBytes(f.Data);
            f.File.Populate(0, f.Data); // The read-only file too: its contents exist before it is opened.
        }

        using (var mm = new AddressSpace(machine, strategy, new AddressSpaceOptions { ZapBatchPages = 8 }))
        {
            run._mm = mm;
            machine.Run(0, cpu =>
            {
                for (int step = 0; step < steps; step++)
                {
                    run.Step(cpu, step);
                    if (step % 100 == 99)
                    {
                        TestMachines.AssertNoViolations(mm, files); // Quiescent: this CPU is the only one.
                        AssertMaximallyMerged(mm);
                    }
                }

                run.Sweep(cpu);
            });
            TestMachines.AssertNoViolations(mm, files);
        }

        foreach (SimFile f in files)
        {
            f.Dispose();
        }

        TestMachines.AssertAllFramesFree(machine, freeBefore);
        return run._trace;
    }

    private void Step(Cpu cpu, int step)
    {
        int op = _rng.Next(100);
        (ulong start, ulong length) = RandomRange(op < 20 ? 8 : 16);
        string at = $"#{step} [0x{start:x}, +{length / Page}p)";
        switch (op)
        {
            case < 14:
                MapFixed(cpu, at, start, length);
                break;
            case < 18:
                MapFloating(cpu, length);
                break;
            case < 28:
                _mm.Unmap(cpu, start, length);
                _oracle.Unmap(start, length);
                _trace.Add($"{at} unmap");
                break;
            case < 38:
            {
                Protection p = Protections[_rng.Next(Protections.Length)];
                bool ok = _oracle.Protect(start, length, p);
                Expect(!ok, () => _mm.Protect(cpu, start, length, p), $"{at} protect {p}");
                break;
            }

            case < 43:
            {
                bool ok = _oracle.DontNeed(start, length);
                Expect(!ok, () => _mm.DontNeed(cpu, start, length), $"{at} dontneed");
                break;
            }

            case < 68:
                WriteSomething(cpu, at, start);
                break;
            case < 94:
                ReadSomething(cpu, at, start);
                break;
            case < 97:
            {
                MmOracle.FileModel f = _files[_rng.Next(_files.Length)];
                int offset = _rng.Next((int)f.File.Length - 16);
                byte[] data = new byte[_rng.Next(1, Math.Min(6000, (int)f.File.Length - offset))];
                _rng.NextBytes(data);
                if (!f.File.IsWritable)
                {
                    // A read-only file refuses pwrite (EBADF) and keeps its contents.
                    Assert.Throws<InvalidOperationException>(() => f.File.Write(offset, data));
                    _trace.Add($"{at} pwrite file {Array.IndexOf(_files, f)} refused (read-only)");
                    break;
                }

                f.File.Write(offset, data);
                data.CopyTo(f.Data, offset);
                _trace.Add($"{at} pwrite file {Array.IndexOf(_files, f)} @{offset} +{data.Length}");
                break;
            }

            default:
            {
                MmOracle.FileModel f = _files[_rng.Next(_files.Length)];
                byte[] got = new byte[f.File.Length];
                f.File.Read(0, got);
                Assert.True(got.AsSpan().SequenceEqual(f.Data), $"{at}: file {Array.IndexOf(_files, f)} does not hold what was written to it.");
                _trace.Add($"{at} pread file {Array.IndexOf(_files, f)} {TestMachines.Hash(got):x}");
                break;
            }
        }
    }

    private void MapFixed(Cpu cpu, string at, ulong start, ulong length)
    {
        Protection p = Protections[_rng.Next(Protections.Length)];
        var kind = (MappingKind)_rng.Next(3);
        MmOracle.FileModel? file = kind == MappingKind.Anonymous ? null : _files[_rng.Next(_files.Length)];
        long offset = 0;
        bool bad = _oracle.AnyMapped(start, length);
        if (file != null)
        {
            long filePages = file.File.Pages;
            offset = _rng.Next((int)filePages + 2) * (long)Page; // Now and then past the end: refused.
            bad |= offset + (long)length > file.File.Length;
            bad |= kind == MappingKind.SharedFile && MmOracle.AllowsWrite(p) && !file.File.IsWritable;
        }

        Expect(bad, () => _mm.Map(cpu, length, p, kind, file?.File, offset, start), $"{at} map {p} {kind} file {(file == null ? -1 : Array.IndexOf(_files, file))} @{offset / (long)Page}");
        if (!bad)
        {
            _oracle.Map(start, length, p, kind, file, offset);
        }
    }

    /// <summary>A mapping placed by the address space (top-down), of any kind; file ones always fit their file.</summary>
    private void MapFloating(Cpu cpu, ulong length)
    {
        Protection p = Protections[_rng.Next(1, Protections.Length)];
        var kind = (MappingKind)_rng.Next(3);
        MmOracle.FileModel? file = null;
        long offset = 0;
        if (kind != MappingKind.Anonymous)
        {
            file = _files[_rng.Next(2)]; // The writable ones.
            length = Math.Min(length, (ulong)file.File.Length);
            offset = _rng.Next((int)(file.File.Pages - (long)(length / Page)) + 1) * (long)Page;
        }

        ulong a = _mm.Map(cpu, length, p, kind, file?.File, offset);
        Assert.Equal(0UL, a % Page);
        Assert.False(_oracle.AnyMapped(a, length), $"Map chose [0x{a:x}, +{length}) which overlaps a mapping.");
        _oracle.Map(a, length, p, kind, file, offset);
        _floating.Add((a, length));
        _trace.Add($"map {p} {kind} +{length / Page}p @{offset / (long)Page} -> 0x{a:x}");
    }

    private void WriteSomething(Cpu cpu, string at, ulong start)
    {
        if (_rng.Next(3) == 0)
        {
            ulong address = start + (ulong)_rng.Next(4096 - 64);
            byte[] data = new byte[_rng.Next(1, 6000)];
            _rng.NextBytes(data);
            AccessResult expected = _oracle.Write(address, data);
            AccessResult got = _mm.TryWriteBytes(cpu, address, data);
            Assert.True(expected == got, $"{at}: write of {data.Length} bytes at 0x{address:x}: expected {expected}, got {got}.");
            _trace.Add($"{at} write 0x{address:x} +{data.Length} {got}");
        }
        else
        {
            ulong address = start + ((ulong)_rng.Next(512) * 8);
            ulong value = (ulong)_rng.NextInt64();
            AccessResult expected = _oracle.Write(address, BitConverter.GetBytes(value));
            AccessResult got = _mm.TryWrite(cpu, address, value);
            Assert.True(expected == got, $"{at}: 8-byte write at 0x{address:x}: expected {expected}, got {got}.");
            _trace.Add($"{at} write 0x{address:x} {got}");
        }
    }

    private void ReadSomething(Cpu cpu, string at, ulong start)
    {
        ulong address = start + (ulong)_rng.Next(2048);
        byte[] want = new byte[_rng.Next(1, 6000)];
        byte[] got = new byte[want.Length];
        AccessResult expected = _oracle.Read(address, want);
        AccessResult result = _mm.TryReadBytes(cpu, address, got);
        Assert.True(expected == result, $"{at}: read of {got.Length} bytes at 0x{address:x}: expected {expected}, got {result}.");
        if (result == AccessResult.Ok)
        {
            AssertSameBytes(want, got, address, at);
        }

        _trace.Add($"{at} read 0x{address:x} +{got.Length} {result} {(result == AccessResult.Ok ? TestMachines.Hash(got) : 0):x}");
    }

    /// <summary>Reads every page of the window and of every mapping the oracle knows.</summary>
    private void Sweep(Cpu cpu)
    {
        var pages = new SortedSet<ulong>(_oracle.MappedPages);
        for (ulong i = 0; i < WindowPages; i++)
        {
            pages.Add(Window + (i * Page));
        }

        byte[] want = new byte[Page];
        byte[] got = new byte[Page];
        foreach (ulong page in pages)
        {
            AccessResult expected = _oracle.Read(page, want);
            AccessResult result = _mm.TryReadBytes(cpu, page, got);
            Assert.True(expected == result, $"sweep: page 0x{page:x}: expected {expected}, got {result}.");
            if (result == AccessResult.Ok)
            {
                AssertSameBytes(want, got, page, "sweep");
            }

            _trace.Add($"sweep 0x{page:x} {result} {(result == AccessResult.Ok ? TestMachines.Hash(got) : 0):x}");
        }

        foreach (MmOracle.FileModel f in _files)
        {
            byte[] data = new byte[f.File.Length];
            f.File.Read(0, data);
            Assert.True(data.AsSpan().SequenceEqual(f.Data), $"sweep: file {Array.IndexOf(_files, f)} does not hold what was written to it.");
        }
    }

    private (ulong Start, ulong Length) RandomRange(int maxPages)
    {
        if (_floating.Count > 0 && _rng.Next(5) == 0)
        {
            (ulong s, ulong l) = _floating[_rng.Next(_floating.Count)];
            ulong pages = l / Page;
            ulong first = (ulong)_rng.Next((int)pages);
            ulong count = (ulong)_rng.Next(1, (int)(pages - first) + 1);
            return (s + (first * Page), count * Page);
        }

        ulong startPage = (ulong)_rng.Next(WindowPages);
        ulong n = (ulong)_rng.Next(1, maxPages + 1);
        n = Math.Min(n, WindowPages - startPage);
        return (Window + (startPage * Page), n * Page);
    }

    private void Expect(bool shouldThrow, Action act, string what)
    {
        if (shouldThrow)
        {
            ArgumentException ex = Assert.ThrowsAny<ArgumentException>(act);
            _trace.Add($"{what} -> {ex.GetType().Name}");
        }
        else
        {
            act();
            _trace.Add($"{what} -> ok");
        }
    }

    private static void AssertSameBytes(byte[] want, byte[] got, ulong address, string at)
    {
        int i = want.AsSpan().CommonPrefixLength(got);
        Assert.True(i == want.Length, $"{at}: byte at 0x{address + (ulong)i:x} is {(i < got.Length ? got[i] : 0)}, the oracle expects {(i < want.Length ? want[i] : 0)}.");
    }

    /// <summary>Map and Protect merge like Linux's vma_merge: no two adjacent VMAs could be one.</summary>
    private static void AssertMaximallyMerged(AddressSpace mm)
    {
        IReadOnlyList<VmaInfo> vmas = mm.Vmas.Snapshot();
        for (int i = 1; i < vmas.Count; i++)
        {
            VmaInfo a = vmas[i - 1];
            VmaInfo b = vmas[i];
            bool joinable = a.End == b.Start && a.Protection == b.Protection && a.Kind == b.Kind && ReferenceEquals(a.File, b.File)
                && (a.File == null || a.FilePageOffset + (long)(a.Length >> 12) == b.FilePageOffset);
            Assert.False(joinable, $"{a} and {b} should have been merged.");
        }
    }
}
