using BenchmarkDotNet.Attributes;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Suites;

/// <summary>The fault kinds the single-CPU suite measures.</summary>
public enum FaultKind
{
    /// <summary>First write to private anonymous memory (allocate + zero + install).</summary>
    AnonWrite,

    /// <summary>First read of private anonymous memory.</summary>
    AnonRead,

    /// <summary>First read of a private file mapping (map the page-cache page read-only).</summary>
    PrivateFileRead,

    /// <summary>First write to a private file mapping (copy from the page cache).</summary>
    PrivateFileWrite,

    /// <summary>First write to a shared file mapping (map the page-cache page writable, dirty it).</summary>
    SharedFileWrite,

    /// <summary>Write to a present read-only page-cache page of a private mapping (copy on write + one-page shootdown).</summary>
    CowWrite,
}

/// <summary>
/// One page fault on one CPU, per strategy and fault kind, zeroing/copying included; MmapLock is the baseline, so the
/// Ratio column is the uncontended cost of each alternative (the kernel's speculative series cost 2–6% system time).
/// Each invocation faults <see cref="Pages"/> pages on CPU 0 after an iteration setup that zapped them
/// (<c>DontNeed</c>, untimed).
/// </summary>
[OpsPerSecondColumn]
public class FaultBenchmarks
{
    /// <summary>Pages faulted per invocation.</summary>
    public const int Pages = 4096;

    private const ulong Bytes = (ulong)Pages * 4096;
    private Machine _machine = null!;
    private SimFile _file = null!;
    private readonly Dictionary<string, (AddressSpace Mm, ulong Start)> _spaces = [];

    /// <summary>The fault kind.</summary>
    [Params(FaultKind.AnonWrite, FaultKind.AnonRead, FaultKind.PrivateFileRead, FaultKind.PrivateFileWrite, FaultKind.SharedFileWrite, FaultKind.CowWrite)]
    public FaultKind Kind { get; set; }

    /// <summary>Builds one machine and one address space per strategy.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 512L << 20 });
        _file = new SimFile(_machine, (long)Bytes);
        foreach (FaultStrategy s in new FaultStrategy[] { new MmapLockStrategy(), new SpeculativeStrategy(), new PerVmaLockStrategy() })
        {
            var mm = new AddressSpace(_machine, s);
            ulong start = _machine.Run(0, cpu => Kind switch
            {
                FaultKind.AnonWrite or FaultKind.AnonRead => mm.Map(cpu, Bytes, Protection.ReadWrite),
                FaultKind.SharedFileWrite => mm.Map(cpu, Bytes, Protection.ReadWrite, MappingKind.SharedFile, _file),
                _ => mm.Map(cpu, Bytes, Protection.ReadWrite, MappingKind.PrivateFile, _file),
            });
            _spaces[s.Name] = (mm, start);
        }
    }

    /// <summary>Zaps every page (and, for copy-on-write, maps the page-cache pages read-only again). Untimed.</summary>
    [IterationSetup]
    public void Reset()
    {
        foreach ((AddressSpace mm, ulong start) in _spaces.Values)
        {
            _machine.Run(0, cpu =>
            {
                mm.DontNeed(cpu, start, Bytes);
                if (Kind == FaultKind.CowWrite)
                {
                    for (ulong off = 0; off < Bytes; off += 4096)
                    {
                        mm.TryRead(cpu, start + off, out byte _);
                    }
                }
            });
        }
    }

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach ((AddressSpace mm, ulong start) in _spaces.Values)
        {
            _machine.Run(0, cpu => mm.Unmap(cpu, start, Bytes));
            mm.Dispose();
        }

        _file.Dispose();
        _machine.Dispose();
    }

    /// <summary>The classic path (baseline).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Pages)]
    public void MmapLock() => Fault("mmap-lock");

    /// <summary>The speculative path.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void Speculative() => Fault("speculative");

    /// <summary>Per-VMA locks.</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void PerVmaLock() => Fault("per-vma-lock");

    private void Fault(string strategy)
    {
        (AddressSpace mm, ulong start) = _spaces[strategy];
        bool write = Kind is not (FaultKind.AnonRead or FaultKind.PrivateFileRead);
        _machine.Run(0, cpu =>
        {
            for (ulong off = 0; off < Bytes; off += 4096)
            {
                AccessResult r = write ? mm.TryWrite(cpu, start + off, (byte)1) : mm.TryRead(cpu, start + off, out byte _);
                if (r != AccessResult.Ok)
                {
                    throw new InvalidOperationException($"{r} at 0x{start + off:x}");
                }
            }
        });
    }
}
