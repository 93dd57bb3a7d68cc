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
/// One page fault on one CPU, per strategy (every correct one of <see cref="StrategyCatalog"/>) and fault kind,
/// zeroing/copying included; the catalog's baseline (mmap-lock) is the reference, so the "Ratio vs" column is the
/// uncontended cost of each alternative (the kernel's speculative series cost 2–6% system time).
/// Each invocation faults <see cref="Pages"/> pages on CPU 0 after an iteration setup that zapped them
/// (<c>DontNeed</c>, untimed, so zap cost is not in any strategy's time).
/// </summary>
/// <remarks>
/// <c>[IterationSetup]</c> forces one invocation per iteration, so an iteration must be long on its own:
/// <see cref="Pages"/> (256 MiB) makes it about 5–100 ms depending on the kind (tens of milliseconds for anonymous
/// faults), nearer BenchmarkDotNet's 100 ms guideline than the 1–10 ms a 4096-page run gave. Each case builds only its own strategy's address space
/// (global setup per parameter case), so the untimed zap of one strategy never evicts the caches of another's measurement.
/// The closure and <see cref="Machine.Run"/> dispatch happen once per 65536 faults, so the Allocated column is the
/// fault path's bytes per fault (0 B expected; the CI gate is HotPathAllocationTests).
/// </remarks>
[OpsPerSecondColumn]
[StrategyRatioColumn]
[MinColumn]
[MedianColumn]
[Config(typeof(BenchConfig))]
public class FaultBenchmarks
{
    /// <summary>Pages faulted per invocation (256 MiB).</summary>
    public const int Pages = 65536;

    private const ulong Bytes = (ulong)Pages * 4096;
    private Machine _machine = null!;
    private SimFile _file = null!;
    private AddressSpace _mm = null!;
    private ulong _start;

    /// <summary>The fault kind.</summary>
    [Params(FaultKind.AnonWrite, FaultKind.AnonRead, FaultKind.PrivateFileRead, FaultKind.PrivateFileWrite, FaultKind.SharedFileWrite, FaultKind.CowWrite)]
    public FaultKind Kind { get; set; }

    /// <summary>The strategy: every correct one of <see cref="StrategyCatalog"/>, its baseline first.</summary>
    [ParamsSource(nameof(Strategies))]
    public string Strategy { get; set; } = StrategyCatalog.Baseline;

    /// <summary>The catalog's strategies (<see cref="StrategyParams.Names"/>).</summary>
    public static IEnumerable<string> Strategies => StrategyParams.Names;

    /// <summary>Builds the machine and the address space of <see cref="Strategy"/> only.</summary>
    [GlobalSetup]
    public void GlobalSetup() => Setup(StrategyCatalog.Create(Strategy));

    /// <summary>Zaps every page (and, for copy-on-write, maps the page-cache pages read-only again). Untimed.</summary>
    [IterationSetup]
    public void Reset()
    {
        _machine.Run(0, cpu =>
        {
            _mm.DontNeed(cpu, _start, Bytes);
            if (Kind == FaultKind.CowWrite)
            {
                for (ulong off = 0; off < Bytes; off += 4096)
                {
                    _mm.TryRead(cpu, _start + off, out byte _);
                }
            }
        });
    }

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _machine.Run(0, cpu => _mm.Unmap(cpu, _start, Bytes));
        _mm.Dispose();
        _file.Dispose();
        _machine.Dispose();
    }

    /// <summary>Faults with <see cref="Strategy"/> (the "Ratio vs" column compares it with the catalog's baseline).</summary>
    [Benchmark(OperationsPerInvoke = Pages)]
    public void Faults() => Fault();

    private void Setup(FaultStrategy strategy)
    {
        // Room for every anonymous page, the file's page cache and the page tables.
        _machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = (2 * (long)Bytes) + (64L << 20) });
        _file = new SimFile(_machine, (long)Bytes);
        _mm = new AddressSpace(_machine, strategy);
        _start = _machine.Run(0, cpu => Kind switch
        {
            FaultKind.AnonWrite or FaultKind.AnonRead => _mm.Map(cpu, Bytes, Protection.ReadWrite),
            FaultKind.SharedFileWrite => _mm.Map(cpu, Bytes, Protection.ReadWrite, MappingKind.SharedFile, _file),
            _ => _mm.Map(cpu, Bytes, Protection.ReadWrite, MappingKind.PrivateFile, _file),
        });
    }

    private void Fault()
    {
        AddressSpace mm = _mm;
        ulong start = _start;
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
