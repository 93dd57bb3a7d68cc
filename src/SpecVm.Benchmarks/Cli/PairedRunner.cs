using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Cli;

/// <summary>
/// The <c>paired</c> command: the headline ratios of issue #14 measured side by side on one CPU, the two sides of each
/// ratio alternating round by round (order drawn per round), so a noisy shared machine slows both sides of a round
/// alike. Each ratio is the median of the per-round ratios, with its interquartile range, and each side's allocation
/// per operation.
/// </summary>
/// <remarks>
/// Cases: <c>tlb-hit</c> — a simulated 8-byte write (and read) that hits the CPU's TLB against a plain store to the same
/// frame (target ≤ 5×); <c>faults</c> — one-CPU anonymous write and read faults of each strategy against the mmap-lock
/// baseline (target ≤ 1.02), a fresh 4 MiB region per round, zeroing (writes) or the zero page (reads) included, the
/// map and unmap outside the timed loop. BenchmarkDotNet's suites (<c>bdn</c>) give the same quantities with their
/// statistics; this command exists because a ratio of two BenchmarkDotNet cases is taken minutes apart.
/// </remarks>
internal static unsafe class PairedRunner
{
    /// <summary>The issue's targets.</summary>
    internal const double TlbHitTarget = 5.0;

    /// <summary>The issue's fault-ratio target.</summary>
    internal const double FaultTarget = 1.02;

    private const int TlbOps = 100_000;
    private const int FaultPages = 1024;

    public static Command Create()
    {
        var cases = new Option<string>("--case", "-c")
        {
            Description = "tlb-hit, faults or all.",
            DefaultValueFactory = _ => "all",
        };
        var rounds = new Option<int>("--rounds", "-r")
        {
            Description = "Rounds per pair (each round times both sides once, in a random order).",
            DefaultValueFactory = _ => 200,
        };
        var json = new Option<string?>("--json") { Description = "Also write the ratios as JSON to this file." };
        var allowDebug = new Option<bool>("--allow-debug") { Description = "Run in a Debug build (its ratios are not the package's)." };
        var command = new Command("paired", "Measure the hot-path ratios side by side on one CPU: TLB-hit access vs a native store, each strategy's one-CPU fault vs mmap-lock (median of per-round ratios, IQR, bytes allocated per op).")
        {
            cases, rounds, json, allowDebug,
        };
        command.SetAction(p => Run(p.GetValue(cases)!, p.GetValue(rounds), p.GetValue(json), p.GetValue(allowDebug)));
        return command;
    }

    private static int Run(string which, int rounds, string? json, bool allowDebug)
    {
        if (rounds < 5)
        {
            throw new UsageException($"--rounds must be at least 5 (got {rounds}): a median of fewer paired rounds says little.");
        }

        bool tlb = which is "all" or "tlb-hit";
        bool faults = which is "all" or "faults";
        if (!tlb && !faults)
        {
            throw new UsageException($"--case must be tlb-hit, faults or all (got '{which}').");
        }

        CalibrateRunner.CheckBuild(allowDebug, "paired");
        var results = new List<PairedRatio>();
        if (tlb)
        {
            results.AddRange(MeasureTlbHit(rounds, Console.WriteLine));
        }

        if (faults)
        {
            results.AddRange(MeasureFaults(rounds, Console.WriteLine));
        }

        Console.WriteLine();
        Console.WriteLine("| Ratio | Median | IQR | Sides (median ns/op) | Allocated (B/op) | Target | Verdict |");
        Console.WriteLine("|---|---|---|---|---|---|---|");
        var inv = CultureInfo.InvariantCulture;
        foreach (PairedRatio r in results)
        {
            Console.WriteLine(string.Create(inv,
                $"| {r.Name} | {r.Median:F2} | {r.Q1:F2}–{r.Q3:F2} | {r.NumeratorNs:F2} / {r.DenominatorNs:F2} | {r.NumeratorBytesPerOp:F2} / {r.DenominatorBytesPerOp:F2} | ≤ {r.Target:F2} | {(r.Median <= r.Target ? "met" : "missed")} |"));
        }

        if (json != null)
        {
            File.WriteAllText(json, JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
            Console.WriteLine($"Written to {Path.GetFullPath(json)}");
        }

        return ExitCodes.Ok;
    }

    /// <summary>TLB-hit write and read against a native store, on CPU 0's thread (attached), one page in the TLB.</summary>
    internal static List<PairedRatio> MeasureTlbHit(int rounds, Action<string> progress)
    {
        progress($"tlb-hit: {rounds} rounds of {TlbOps:N0} native stores, TLB-hit writes and TLB-hit reads, order random per round");
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 16L << 20, Pin = true });
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        ulong va = machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4096, Protection.ReadWrite);
            mm.Write(cpu, a + 64, 1UL);
            return a;
        }) + 1024;
        using CpuAttachment attachment = machine.Attach(0);
        Cpu cpu = attachment.Cpu;
        byte* frame = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(4096, 64);
        try
        {
            // Warm all three until the JIT's tiering is done (tier-0, OSR, then tier-1 with PGO compiled in the
            // background): timed rounds of tier-0 code would measure the JIT, not the MMU.
            WarmUp(() =>
            {
                NativeStores(frame, TlbOps);
                TlbHitWrites(mm, cpu, va, TlbOps);
                TlbHitReads(mm, cpu, va, TlbOps);
            });

            var native = new double[rounds];
            var write = new double[rounds];
            var read = new double[rounds];
            var rng = new Random(0x7B1);
            long bytesNative = 0, bytesWrite = 0, bytesRead = 0;
            for (int r = 0; r < rounds; r++)
            {
                foreach (int side in Shuffled(rng, 3))
                {
                    long b0 = GC.GetAllocatedBytesForCurrentThread();
                    long t0 = Stopwatch.GetTimestamp();
                    switch (side)
                    {
                        case 0: NativeStores(frame, TlbOps); break;
                        case 1: TlbHitWrites(mm, cpu, va, TlbOps); break;
                        default: TlbHitReads(mm, cpu, va, TlbOps); break;
                    }

                    double ns = Stopwatch.GetElapsedTime(t0).TotalNanoseconds / TlbOps;
                    long bytes = GC.GetAllocatedBytesForCurrentThread() - b0;
                    switch (side)
                    {
                        case 0: native[r] = ns; bytesNative += bytes; break;
                        case 1: write[r] = ns; bytesWrite += bytes; break;
                        default: read[r] = ns; bytesRead += bytes; break;
                    }
                }
            }

            double ops = (double)rounds * TlbOps;
            progress($"  TLB hits {machine.Counter(CpuCounter.TlbHits):N0}, misses {machine.Counter(CpuCounter.TlbMisses):N0}");
            return
            [
                PairedRatio.From("TLB-hit write / native store", write, native, bytesWrite / ops, bytesNative / ops, TlbHitTarget),
                PairedRatio.From("TLB-hit read / native store", read, native, bytesRead / ops, bytesNative / ops, TlbHitTarget),
            ];
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(frame);
        }
    }

    /// <summary>Each strategy's one-CPU anonymous write and read faults against mmap-lock's, alternating per round.</summary>
    internal static List<PairedRatio> MeasureFaults(int rounds, Action<string> progress)
    {
        string baseline = StrategyCatalog.Baseline;
        var results = new List<PairedRatio>();
        foreach (bool write in new[] { true, false })
        {
            foreach (string name in StrategyCatalog.DefaultNames.Where(n => n != baseline))
            {
                progress($"faults: {name} / {baseline}, anonymous {(write ? "write" : "read")}, {rounds} rounds of {FaultPages:N0} faults each");
                results.Add(MeasureFaultPair(name, baseline, write, rounds));
            }
        }

        return results;
    }

    private static PairedRatio MeasureFaultPair(string strategy, string baseline, bool write, int rounds)
    {
        var machineOptions = new MachineOptions { CpuCount = 1, MemoryBytes = 64L << 20, Pin = true };
        KernelProfile.Default.ApplyTo(machineOptions);
        using var machine = new Machine(machineOptions);
        using var a = new AddressSpace(machine, StrategyCatalog.Create(strategy), KernelProfile.Default.CreateAddressSpaceOptions());
        using var b = new AddressSpace(machine, StrategyCatalog.Create(baseline), KernelProfile.Default.CreateAddressSpaceOptions());
        using CpuAttachment attachment = machine.Attach(0);
        Cpu cpu = attachment.Cpu;
        WarmUp(() =>
        {
            FaultRound(a, cpu, write, out _);
            FaultRound(b, cpu, write, out _);
        });

        var sa = new double[rounds];
        var sb = new double[rounds];
        long bytesA = 0, bytesB = 0;
        var rng = new Random(0xFA17);
        for (int r = 0; r < rounds; r++)
        {
            foreach (int side in Shuffled(rng, 2))
            {
                if (side == 0)
                {
                    sa[r] = FaultRound(a, cpu, write, out long bytes);
                    bytesA += bytes;
                }
                else
                {
                    sb[r] = FaultRound(b, cpu, write, out long bytes);
                    bytesB += bytes;
                }
            }
        }

        double ops = (double)rounds * FaultPages;
        return PairedRatio.From($"{strategy} / {baseline}, anonymous {(write ? "write" : "read")} fault", sa, sb, bytesA / ops, bytesB / ops, FaultTarget);
    }

    /// <summary>Maps a fresh region, times one fault per page (write or read), unmaps; ns per fault.</summary>
    private static double FaultRound(AddressSpace mm, Cpu cpu, bool write, out long bytes)
    {
        ulong start = mm.Map(cpu, (ulong)FaultPages * 4096, Protection.ReadWrite);
        long b0 = GC.GetAllocatedBytesForCurrentThread();
        long t0 = Stopwatch.GetTimestamp();
        Touch(mm, cpu, start, write);
        double ns = Stopwatch.GetElapsedTime(t0).TotalNanoseconds / FaultPages;
        bytes = GC.GetAllocatedBytesForCurrentThread() - b0;
        mm.Unmap(cpu, start, (ulong)FaultPages * 4096);
        return ns;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Touch(AddressSpace mm, Cpu cpu, ulong start, bool write)
    {
        for (int i = 0; i < FaultPages; i++)
        {
            ulong va = start + ((ulong)i * 4096);
            AccessResult r = write ? mm.TryWrite(cpu, va, 1UL) : mm.TryRead(cpu, va, out ulong _);
            if (r != AccessResult.Ok)
            {
                throw new InvalidOperationException($"A fault at 0x{va:x} failed: {r}.");
            }
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void NativeStores(byte* p, int n)
    {
        for (int i = 0; i < n; i++)
        {
            Unsafe.WriteUnaligned(p, (ulong)i);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static AccessResult TlbHitWrites(AddressSpace mm, Cpu cpu, ulong va, int n)
    {
        AccessResult r = AccessResult.Ok;
        for (int i = 0; i < n; i++)
        {
            r |= mm.TryWrite(cpu, va, (ulong)i);
        }

        return r;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static ulong TlbHitReads(AddressSpace mm, Cpu cpu, ulong va, int n)
    {
        ulong sum = 0;
        for (int i = 0; i < n; i++)
        {
            mm.TryRead(cpu, va, out ulong v);
            sum += v;
        }

        return sum;
    }

    /// <summary>
    /// Runs <paramref name="work"/> for a second, pauses for the background JIT to install tier-1 code, and runs it for
    /// a quarter second more.
    /// </summary>
    private static void WarmUp(Action work)
    {
        foreach (double seconds in new[] { 1.0, 0.25 })
        {
            long end = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
            do
            {
                work();
            }
            while (Stopwatch.GetTimestamp() < end);
            Thread.Sleep(200);
        }
    }

    private static int[] Shuffled(Random rng, int n)
    {
        int[] order = [.. Enumerable.Range(0, n)];
        rng.Shuffle(order);
        return order;
    }
}

/// <summary>One paired ratio: median and quartiles of per-round ratios, each side's median time and allocation per op.</summary>
internal sealed record PairedRatio(string Name, double Median, double Q1, double Q3, double NumeratorNs, double DenominatorNs, double NumeratorBytesPerOp, double DenominatorBytesPerOp, double Target, int Rounds)
{
    public static PairedRatio From(string name, double[] numerator, double[] denominator, double numeratorBytes, double denominatorBytes, double target)
    {
        double[] ratios = [.. numerator.Zip(denominator, (n, d) => n / d).Order()];
        return new PairedRatio(name, Quantile(ratios, 0.5), Quantile(ratios, 0.25), Quantile(ratios, 0.75),
            Quantile([.. numerator.Order()], 0.5), Quantile([.. denominator.Order()], 0.5), numeratorBytes, denominatorBytes, target, ratios.Length);
    }

    /// <summary>Linear-interpolated quantile of sorted values.</summary>
    internal static double Quantile(double[] sorted, double q)
    {
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos);
        int hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + ((pos - lo) * (sorted[hi] - sorted[lo]));
    }
}
