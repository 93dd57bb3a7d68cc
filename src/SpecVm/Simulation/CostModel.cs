using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace SpecVm.Simulation;

/// <summary>
/// The virtual-time cost model (docs/design.md §6), one place for every constant: a topology (sockets, core complexes,
/// cores) and the nanoseconds each priced event costs. Every constant names its source; constants marked uncertain
/// are the ones the sensitivity band perturbs.
/// </summary>
/// <remarks>
/// Cache lines: a load of a line this CPU has is <see cref="LocalHitNs"/>; a line held elsewhere costs a transfer by
/// topology distance (<see cref="SameComplexNs"/>, <see cref="SameSocketNs"/>, <see cref="OtherSocketNs"/>); a store or
/// read-modify-write invalidates the sharers (the farthest one priced) and read-modify-writes on one line serialise
/// (a line is busy for one transfer per owner change). Local work is priced from the CPU's own event counters with the
/// host calibration (<see cref="TlbHitNs"/>, <see cref="FaultNs"/>, ...), so the same model serves every topology.
/// </remarks>
public sealed class CostModel
{
    /// <summary>The preset names: <c>host</c>, <c>epyc-2s-128</c>, <c>xeon-2s-56</c>.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["host", "epyc-2s-128", "xeon-2s-56"];

    /// <summary>The preset's or file's name.</summary>
    public string Name { get; set; } = "custom";

    /// <summary>Sockets (1 or more).</summary>
    public int Sockets { get; set; } = 1;

    /// <summary>Cores per socket (one simulated CPU per core; no SMT).</summary>
    public int CoresPerSocket { get; set; } = 2;

    /// <summary>Cores per core complex (a shared L3 slice: AMD CCX; an Intel socket is one complex).</summary>
    public int CoresPerComplex { get; set; } = 2;

    /// <summary>A load or store that hits this CPU's own copy of a line. Source: L1 latency, ~4-5 cycles.</summary>
    public double LocalHitNs { get; set; } = 1.5;

    /// <summary>A locked read-modify-write on a line this CPU owns (x86 lock prefix, ~20 cycles; Agner Fog's tables).</summary>
    public double LocalAtomicNs { get; set; } = 6;

    /// <summary>A line moved from another core of the same complex (docs/references.md, hardware constants). Uncertain.</summary>
    public double SameComplexNs { get; set; } = 20;

    /// <summary>A line moved from another complex of the same socket. Uncertain.</summary>
    public double SameSocketNs { get; set; } = 80;

    /// <summary>A line moved from the other socket. Uncertain.</summary>
    public double OtherSocketNs { get; set; } = 200;

    /// <summary>A line no cache holds (from memory). Source: DRAM latency, ~80-110 ns on servers.</summary>
    public double MemoryNs { get; set; } = 90;

    /// <summary>The first IPI's send cost to the initiator (ICR write; docs/references.md: ~1 µs per round). Uncertain.</summary>
    public double IpiSendNs { get; set; } = 300;

    /// <summary>Each extra target's send cost (docs/references.md: ~0.2 µs per extra target). Uncertain.</summary>
    public double IpiPerTargetNs { get; set; } = 200;

    /// <summary>Send to arrival at the target. Uncertain.</summary>
    public double IpiDeliveryNs { get; set; } = 400;

    /// <summary>The target's interrupt entry, handler and exit (flush work is priced separately). Uncertain.</summary>
    public double IpiHandlerNs { get; set; } = 300;

    /// <summary>A sleeping waiter's wake-up: the waker's try_to_wake_up plus the scheduler's switch-in. Uncertain.</summary>
    public double WakeLatencyNs { get; set; } = 3000;

    /// <summary>Going to sleep (schedule out) when a wait blocks. Uncertain.</summary>
    public double SleepNs { get; set; } = 1000;

    /// <summary>The first step of a spin-wait poll (doubling per step up to <see cref="SpinMaxStepNs"/>).</summary>
    public double SpinStepNs { get; set; } = 50;

    /// <summary>The longest spin-wait poll step.</summary>
    public double SpinMaxStepNs { get; set; } = 1000;

    /// <summary>Core time to zero one 4 KiB page (docs/references.md: ~0.3 µs on a server core). Calibrated on the host.</summary>
    public double PageZeroNs { get; set; } = 300;

    /// <summary>Core time to copy one 4 KiB page. Calibrated on the host.</summary>
    public double PageCopyNs { get; set; } = 400;

    /// <summary>Memory write bandwidth per socket, GB/s (zeroing and copying share it). Uncertain.</summary>
    public double SocketBandwidthGBps { get; set; } = 100;

    /// <summary>A TLB-hit access (the model's own cost, calibrated on the host).</summary>
    public double TlbHitNs { get; set; } = 3;

    /// <summary>A TLB miss that walks the page table and fills the TLB (calibrated on the host).</summary>
    public double TlbMissNs { get; set; } = 25;

    /// <summary>A fault's local work besides lines, locks and page kernels (calibrated on the host). Uncertain.</summary>
    public double FaultNs { get; set; } = 250;

    /// <summary>A VMA edit's local work (map, unmap, protect: one mmap write section; calibrated on the host).</summary>
    public double VmaEditNs { get; set; } = 1500;

    /// <summary>Zapping one present PTE on unmap (freeing bookkeeping; calibrated on the host).</summary>
    public double ZapPageNs { get; set; } = 40;

    /// <summary>Flushing one page from the TLB (x86 invlpg, ~100 ns; docs/references.md).</summary>
    public double FlushPageNs { get; set; } = 100;

    /// <summary>Flushing the whole TLB (CR3 write, then refills priced as misses).</summary>
    public double FullFlushNs { get; set; } = 200;

    /// <summary>Where the constants come from (a sentence; presets name their published sources).</summary>
    public string Source { get; set; } = string.Empty;

    /// <summary>Total cores.</summary>
    [JsonIgnore]
    public int Cores => Sockets * CoresPerSocket;

    /// <summary>The constants that the sensitivity band perturbs (topology and contention constants nobody measured here).</summary>
    public static IReadOnlyList<string> UncertainConstants { get; } =
    [
        nameof(SameComplexNs), nameof(SameSocketNs), nameof(OtherSocketNs), nameof(IpiSendNs), nameof(IpiPerTargetNs),
        nameof(IpiDeliveryNs), nameof(IpiHandlerNs), nameof(WakeLatencyNs), nameof(SleepNs), nameof(SocketBandwidthGBps),
        nameof(FaultNs),
    ];

    /// <summary>A preset by name.</summary>
    /// <param name="name">One of <see cref="PresetNames"/>.</param>
    /// <param name="calibration">The host calibration whose local costs every preset uses (null: the built-in one).</param>
    /// <exception cref="ArgumentException">Unknown name.</exception>
    public static CostModel Preset(string name, CostModel? calibration = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        CostModel local = calibration ?? new CostModel();
        CostModel m = name.ToLowerInvariant() switch
        {
            "host" => local.Named("host"),
            "epyc-2s-128" => local.WithTopology(
                "epyc-2s-128", sockets: 2, coresPerSocket: 64, coresPerComplex: 8, sameComplex: 23, sameSocket: 110, otherSocket: 200, bandwidth: 150,
                "2-socket AMD EPYC (Milan class), 8-core CCXs: core-to-core latencies ~23 ns same CCX, ~110 ns other CCX, ~200 ns other socket (docs/references.md, hardware constants); ~150 GB/s per socket (8 channels DDR4-3200, ~75% of peak)"),
            "xeon-2s-56" => local.WithTopology(
                "xeon-2s-56", sockets: 2, coresPerSocket: 28, coresPerComplex: 28, sameComplex: 48, sameSocket: 48, otherSocket: 125, bandwidth: 100,
                "2-socket Intel Xeon (Skylake/Cascade Lake class, 28 cores each, mesh): ~45-50 ns on one socket, 110-135 ns across sockets (docs/references.md, hardware constants); ~100 GB/s per socket (6 channels DDR4-2933, ~70% of peak)"),
            _ => throw new ArgumentException($"Unknown cost-model preset '{name}'. Known presets: {string.Join(", ", PresetNames)} (or a JSON file).", nameof(name)),
        };
        m.Validate();
        return m;
    }

    /// <summary>Reads a cost model (topology and constants) from JSON; missing constants keep their defaults.</summary>
    /// <param name="json">The JSON text.</param>
    /// <exception cref="ArgumentException">Malformed JSON or invalid values (named).</exception>
    public static CostModel FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        CostModel? m;
        try
        {
            m = JsonSerializer.Deserialize<CostModel>(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"Not a cost model: {e.Message}", nameof(json), e);
        }

        if (m == null)
        {
            throw new ArgumentException("Not a cost model: the JSON is null.", nameof(json));
        }

        m.Validate();
        return m;
    }

    /// <summary>This model as indented JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>A copy.</summary>
    public CostModel Clone() => (CostModel)MemberwiseClone();

    private CostModel Named(string name)
    {
        CostModel m = Clone();
        m.Name = name;
        return m;
    }

    /// <summary>A copy with the constant called <paramref name="constant"/> multiplied by <paramref name="factor"/>.</summary>
    /// <param name="constant">A property name from <see cref="UncertainConstants"/> (or any double constant).</param>
    /// <param name="factor">The factor, positive.</param>
    public CostModel Scaled(string constant, double factor)
    {
        ArgumentNullException.ThrowIfNull(constant);
        if (!(factor > 0) || double.IsInfinity(factor))
        {
            throw new ArgumentOutOfRangeException(nameof(factor), factor, "The factor must be positive and finite.");
        }

        var p = typeof(CostModel).GetProperty(constant);
        if (p == null || p.PropertyType != typeof(double))
        {
            throw new ArgumentException($"'{constant}' is not a cost constant of the model.", nameof(constant));
        }

        CostModel m = Clone();
        p.SetValue(m, (double)p.GetValue(m)! * factor);
        return m;
    }

    /// <summary>Checks every value (positive, finite; topology consistent); throws naming the first bad one.</summary>
    /// <exception cref="ArgumentException">A bad value.</exception>
    public void Validate()
    {
        if (Sockets < 1 || CoresPerSocket < 1 || CoresPerComplex < 1 || CoresPerSocket % CoresPerComplex != 0)
        {
            throw new ArgumentException($"Bad topology: {Sockets} socket(s) × {CoresPerSocket} cores, {CoresPerComplex} per complex (cores per socket must be a multiple of cores per complex).");
        }

        foreach (var p in typeof(CostModel).GetProperties())
        {
            if (p.PropertyType == typeof(double))
            {
                double v = (double)p.GetValue(this)!;
                if (!(v >= 0) || double.IsInfinity(v))
                {
                    throw new ArgumentException($"Cost constant {p.Name} = {v.ToString(CultureInfo.InvariantCulture)} must be a finite number, 0 or more.");
                }
            }
        }

        if (SocketBandwidthGBps <= 0 || SpinStepNs <= 0 || SpinMaxStepNs < SpinStepNs)
        {
            throw new ArgumentException("SocketBandwidthGBps and SpinStepNs must be positive, and SpinMaxStepNs at least SpinStepNs.");
        }
    }

    /// <summary>The socket of core <paramref name="cpu"/> (CPUs fill socket 0 first, then socket 1, ...).</summary>
    internal int SocketOf(int cpu) => Math.Min(cpu / CoresPerSocket, Sockets - 1);

    /// <summary>The cost of moving a line from core <paramref name="from"/> to core <paramref name="to"/>.</summary>
    internal double TransferNs(int from, int to)
    {
        if (from == to)
        {
            return LocalHitNs;
        }

        if (SocketOf(from) != SocketOf(to))
        {
            return OtherSocketNs;
        }

        return from / CoresPerComplex == to / CoresPerComplex ? SameComplexNs : SameSocketNs;
    }

    private CostModel WithTopology(string name, int sockets, int coresPerSocket, int coresPerComplex, double sameComplex, double sameSocket, double otherSocket, double bandwidth, string source)
    {
        CostModel m = Clone();
        m.Name = name;
        m.Sockets = sockets;
        m.CoresPerSocket = coresPerSocket;
        m.CoresPerComplex = coresPerComplex;
        m.SameComplexNs = sameComplex;
        m.SameSocketNs = sameSocket;
        m.OtherSocketNs = otherSocket;
        m.SocketBandwidthGBps = bandwidth;
        m.Source = source + "; local costs: " + (string.IsNullOrEmpty(Source) ? "the built-in host calibration" : Source);
        return m;
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };
}
