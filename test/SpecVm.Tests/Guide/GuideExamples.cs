using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Scaling;
using SpecVm.Smp;
using SpecVm.Workloads;

namespace SpecVm.Tests.Guide;

/// <summary>
/// The code of docs/guide.md, compiled and run. <see cref="GuideTests.EveryCodeBlockOfTheGuideIsCompiledHere"/>
/// checks that each C# block of the guide appears in this file, so the guide cannot drift from code that works.
/// </summary>
public static class GuideExamples
{
    // guide:machine
    public static void MachineAndAddressSpace()
    {
        // A machine with one CPU per core this process may use (each an OS thread pinned to its core) and 256 MiB.
        using var machine = new Machine(new MachineOptions { MemoryBytes = 256L << 20 });

        // An address space whose page faults take the speculative path (falling back to the mmap lock on abort).
        using var mm = new AddressSpace(machine, new SpeculativeStrategy());

        // Code runs on a CPU by receiving it: Run queues the lambda on CPU 0's pinned thread and waits.
        machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 1 << 20, Protection.ReadWrite);   // mmap: 1 MiB, anonymous, private
            mm.Write(cpu, a, 42UL);                                 // TLB miss → walk → fault → retry
            ulong value = mm.Read<ulong>(cpu, a);                   // TLB hit
            Console.WriteLine($"read {value} at 0x{a:x}");

            mm.Protect(cpu, a, 4096, Protection.Read);               // mprotect: narrowing shoots down TLBs
            AccessResult r = mm.TryWrite(cpu, a, 7UL);               // a bad access is a result, not a crash
            Console.WriteLine(r);                                    // SegmentationFault

            mm.Unmap(cpu, a, 1 << 20);                               // munmap: zap, shoot down, free
        });
    }
    // end

    // guide:parallel
    public static void FaultFromEveryCpu()
    {
        using var machine = new Machine(new MachineOptions { MemoryBytes = 512L << 20 });
        using var mm = new AddressSpace(machine, new PerVmaLockStrategy());
        const ulong Slice = 16 << 20;
        ulong region = machine.Run(0, cpu => mm.Map(cpu, Slice * (ulong)machine.CpuCount, Protection.ReadWrite));

        CounterSnapshot before = machine.Snapshot();
        machine.RunOnAll(cpu =>                          // every CPU at once, each on its own core
        {
            ulong mine = region + (Slice * (ulong)cpu.Id);
            for (ulong off = 0; off < Slice; off += 4096)
            {
                mm.TryWrite(cpu, mine + off, 1UL);
            }
        });
        CounterSnapshot delta = machine.Snapshot().Minus(before);

        Console.WriteLine($"faults {delta[CpuCounter.Faults]}, per-VMA lock ok {delta[CpuCounter.VmaLockSuccess]}, " +
                          $"aborts {delta[CpuCounter.VmaLockAbort]}, mmap-lock faults {delta[CpuCounter.MmapLockFaults]}");
        machine.Run(0, cpu => mm.Unmap(cpu, region, Slice * (ulong)machine.CpuCount));
    }
    // end

    // guide:files
    public static void FileMappings()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 64L << 20 });
        using var file = new SimFile(machine, 1 << 20);          // an in-memory file with a page cache
        file.Write(0, "hello"u8);
        using var mm = new AddressSpace(machine, new MmapLockStrategy());
        machine.Run(0, cpu =>
        {
            ulong priv = mm.Map(cpu, 1 << 20, Protection.ReadWrite, MappingKind.PrivateFile, file);
            ulong shared = mm.Map(cpu, 1 << 20, Protection.ReadWrite, MappingKind.SharedFile, file);
            mm.Write(cpu, priv, (byte)'J');     // copy on write: the file is unchanged
            mm.Write(cpu, shared + 1, (byte)'E'); // shared: the page cache changes
            Span<byte> text = stackalloc byte[5];
            file.Read(0, text);
            Console.WriteLine(System.Text.Encoding.ASCII.GetString(text)); // "hEllo"
            mm.Unmap(cpu, priv, 1 << 20);
            mm.Unmap(cpu, shared, 1 << 20);
        });
    }
    // end

    // guide:strategy
    /// <summary>A custom strategy: try the speculative path only for writes, take the mmap lock for reads.</summary>
    public sealed class WriteOnlySpeculation : FaultStrategy
    {
        private readonly SpeculativeStrategy _speculative = new();
        private readonly MmapLockStrategy _classic = new();

        public override string Name => "write-only-speculation";

        public override FaultResult HandleFault(Cpu cpu, AddressSpace mm, ulong address, bool write) =>
            write ? _speculative.HandleFault(cpu, mm, address, write) : _classic.HandleFault(cpu, mm, address, write);
    }
    // end

    // guide:workload
    /// <summary>A custom workload: each task re-touches its own 4 MiB slice of one shared mapping, page by page.</summary>
    public sealed class SliceToucher : Workload
    {
        private const ulong Slice = 4 << 20;
        private AddressSpace? _mm;
        private ulong _region;
        private ulong[] _cursor = [];

        public override string Name => "slice-toucher";

        public override string OperationUnit => "pages touched";

        public override void Setup(Machine machine, FaultStrategy? strategy, int threads)
        {
            _mm = new AddressSpace(machine, strategy ?? new MmapLockStrategy());
            _region = machine.Run(0, cpu => _mm.Map(cpu, Slice * (ulong)threads, Protection.ReadWrite));
            _cursor = new ulong[threads];
        }

        public override long RunOperationBatch(Cpu cpu, int task)
        {
            ulong start = _region + (Slice * (ulong)task);
            for (int i = 0; i < 64; i++)
            {
                _mm!.TryWrite(cpu, start + _cursor[task], 1UL);
                _cursor[task] = (_cursor[task] + 4096) % Slice;
                if (_cursor[task] == 0)
                {
                    _mm.DontNeed(cpu, start, Slice);   // start over with fresh faults
                }
            }

            return 64;
        }

        public override void Teardown() => _mm?.Dispose();
    }
    // end

    // guide:experiment
    public static ScalingResult RunAnExperiment(TimeSpan duration)
    {
        var experiment = new ScalingExperiment(new ScalingOptions
        {
            Workloads = [new SliceToucher()],
            Strategies = [new MmapLockStrategy(), new SpeculativeStrategy(), new WriteOnlySpeculation()],
            ThreadCounts = [1],                        // default: 1..the cores this process may use
            Warmup = TimeSpan.FromMilliseconds(50),
            Duration = duration,
            Repeats = 1,
        });
        ScalingResult result = experiment.Run();
        foreach (ScalingPoint p in result.Points)
        {
            Console.WriteLine($"{p.Workload} {p.Strategy} x{p.Threads}: {p.OpsPerSecond:N0} {p.OperationUnit}/s");
        }

        result.Save(Path.Combine(Path.GetTempPath(), "specvm-guide-result.json"));
        return result;
    }
    // end
}
