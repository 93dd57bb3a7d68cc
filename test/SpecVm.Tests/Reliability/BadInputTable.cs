using System.Threading;
using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Scaling;
using SpecVm.Smp;
using SpecVm.Sync;
using SpecVm.Workloads;
using Xunit.Abstractions;
using SpecVm.Testing;

namespace SpecVm.Tests.Reliability;

/// <summary>
/// One table of bad input over the whole public API: each row is an action and the exception it must throw (with the
/// parameter name where it is an <see cref="ArgumentException"/>). Every row runs against the same machine, address
/// space and files; after the whole table the invariant checker passes on them, the data mapped before the table is
/// intact, no CPU is left with interrupts disabled, and every frame comes back on teardown: bad input leaks nothing
/// and corrupts nothing. (Some rows overlap AddressSpaceArgumentTests and MachineInputTests on purpose: this table is
/// the one place that lists the whole surface.)
/// </summary>
public class BadInputTable(ITestOutputHelper output)
{
    private const ulong Page = 4096;

    /// <summary>A row: what is done, what must be thrown, and the parameter an ArgumentException must name.</summary>
    private sealed record Row(string Api, Action<Fixture> Act, Type Expected, string? Param = null);

    /// <summary>The state every row shares.</summary>
    private sealed class Fixture
    {
        public required Machine Machine { get; init; }

        public required AddressSpace Mm { get; init; }

        public required SimFile File { get; init; }

        public required SimFile ReadOnlyFile { get; init; }

        public required ulong Mapped { get; init; }

        public required ulong ReadOnlyMapped { get; init; }

        /// <summary>Runs <paramref name="act"/> on CPU 0 and rethrows what it threw there, unwrapped.</summary>
        public void OnCpu(Action<Cpu> act)
        {
            Exception? thrown = Machine.Run(0, cpu =>
            {
                try
                {
                    act(cpu);
                    return null;
                }
                catch (Exception e)
                {
                    return e;
                }
            });
            if (thrown != null)
            {
                throw thrown;
            }
        }
    }

    private static IEnumerable<Row> Rows()
    {
        // Machine and MachineOptions.
        yield return new("Machine(null)", _ => new Machine(null!), typeof(ArgumentNullException), "options");
        yield return new("MachineOptions.CpuCount = 0", _ => new Machine(new MachineOptions { CpuCount = 0 }), typeof(ArgumentOutOfRangeException), "CpuCount");
        yield return new("MachineOptions.CpuCount = 65", _ => new Machine(new MachineOptions { CpuCount = 65 }), typeof(ArgumentOutOfRangeException), "CpuCount");
        yield return new("MachineOptions.MemoryBytes = 4096", _ => new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 4096 }), typeof(ArgumentOutOfRangeException), "MemoryBytes");
        yield return new("MachineOptions.TlbEntries = 100", _ => new Machine(new MachineOptions { CpuCount = 1, TlbEntries = 100 }), typeof(ArgumentOutOfRangeException), "TlbEntries");
        yield return new("MachineOptions.WatchdogTimeout = 0", _ => new Machine(new MachineOptions { CpuCount = 1, WatchdogTimeout = TimeSpan.Zero }), typeof(ArgumentOutOfRangeException), "WatchdogTimeout");
        yield return new("Machine.Cpu(2) of 2", f => f.Machine.Cpu(2), typeof(ArgumentOutOfRangeException), "cpu");
        yield return new("Machine.Run(-1)", f => f.Machine.Run(-1, _ => { }), typeof(ArgumentOutOfRangeException), "cpu");
        yield return new("Machine.Run(null work)", f => f.Machine.Run(0, (Action<Cpu>)null!), typeof(ArgumentNullException), "work");
        yield return new("Machine.RunAsync(null work)", f => f.Machine.RunAsync(0, null!), typeof(ArgumentNullException), "work");
        yield return new("Machine.RunOn(null cpus)", f => f.Machine.RunOn(null!, _ => { }), typeof(ArgumentNullException), "cpus");
        yield return new("Machine.Run from the CPU's own thread", f => f.OnCpu(_ => f.Machine.Run(0, _ => { })), typeof(InvalidOperationException));
        yield return new("Machine.Run: work returns with irqs off", f => f.Machine.Run(1, c => c.LocalIrqDisable()), typeof(CpuException));
        yield return new("CounterSnapshot.Minus(null)", f => f.Machine.Snapshot().Minus(null!), typeof(ArgumentNullException), "earlier");

        // Cpu.
        yield return new("Cpu.LocalIrqEnable unbalanced", f => f.OnCpu(c => c.LocalIrqEnable()), typeof(InvalidOperationException));
        yield return new("Cpu.Sleep with irqs off", f => f.OnCpu(c =>
        {
            c.LocalIrqDisable();
            try
            {
                c.Sleep(TimeSpan.FromMilliseconds(1));
            }
            finally
            {
                c.LocalIrqEnable();
            }
        }), typeof(InvalidOperationException));

        // Physical memory and frames.
        yield return new("PhysicalMemory(15 frames)", _ => new PhysicalMemory(15), typeof(ArgumentOutOfRangeException), "frameCount");
        yield return new("PhysicalMemory.Frame(-1)", f => f.Machine.Memory.Frame(-1), typeof(ArgumentOutOfRangeException), "pfn");
        yield return new("PhysicalMemory.Frame(FrameCount)", f => f.Machine.Memory.Frame(f.Machine.Memory.FrameCount), typeof(ArgumentOutOfRangeException), "pfn");
        yield return new("PhysicalMemory.FrameSpan(FrameCount)", f => f.Machine.Memory.FrameSpan(f.Machine.Memory.FrameCount), typeof(ArgumentOutOfRangeException), "pfn");
        yield return new("FrameAllocator(null memory)", _ => new FrameAllocator(null!, 1), typeof(ArgumentNullException), "memory");
        yield return new("FrameAllocator.Free(frame 0)", f => f.Machine.Frames.Free(0, 0), typeof(ArgumentOutOfRangeException), "pfn");
        yield return new("FrameAllocator.Free twice", f => f.OnCpu(c =>
        {
            long pfn = f.Machine.Frames.Allocate(c.Id, FrameState.Anonymous);
            f.Machine.Frames.Free(c.Id, pfn);
            f.Machine.Frames.Free(c.Id, pfn);
        }), typeof(InvalidOperationException));

        // TLB, page tables, PTEs.
        yield return new("Tlb(15 entries)", _ => new Tlb(15), typeof(ArgumentOutOfRangeException), "entries");
        yield return new("Tlb(100 entries)", _ => new Tlb(100), typeof(ArgumentOutOfRangeException), "entries");
        yield return new("PageTable(null allocator)", _ => new PageTable(null!, 0), typeof(ArgumentNullException), "allocator");
        yield return new("PageTable.DetachPteTable unaligned", f => f.Mm.PageTable.DetachPteTable(f.Mapped + Page), typeof(ArgumentException), "regionBase");
        yield return new("PageTable.ForEachPresent(null)", f => f.Mm.PageTable.ForEachPresent(null!), typeof(ArgumentNullException), "visit");
        yield return new("Pte.Make(-1)", _ => Pte.Make(-1, 0), typeof(ArgumentOutOfRangeException), "pfn");
        yield return new("Pte.Make(MaxPfn + 1)", _ => Pte.Make(Pte.MaxPfn + 1, 0), typeof(ArgumentOutOfRangeException), "pfn");

        // Files.
        yield return new("SimFile(null machine)", _ => new SimFile(null!, 4096), typeof(ArgumentNullException), "machine");
        yield return new("SimFile(length 0)", f => new SimFile(f.Machine, 0), typeof(ArgumentException), "length");
        yield return new("SimFile(length 4095)", f => new SimFile(f.Machine, 4095), typeof(ArgumentException), "length");
        yield return new("SimFile.Read(-1)", f => f.File.Read(-1, new byte[8]), typeof(ArgumentOutOfRangeException), "offset");
        yield return new("SimFile.Read past the end", f => f.File.Read(f.File.Length - 1, new byte[2]), typeof(ArgumentException), "into");
        yield return new("SimFile.Write past the end", f => f.File.Write(f.File.Length, new byte[1]), typeof(ArgumentException), "data");
        yield return new("SimFile.Write at offset 2^63 - 1", f => f.File.Write(long.MaxValue, new byte[8]), typeof(ArgumentOutOfRangeException), "offset");
        yield return new("SimFile.Write to a read-only file", f => f.ReadOnlyFile.Write(0, new byte[8]), typeof(InvalidOperationException));
        yield return new("SimFile.GetPage(-1)", f => f.File.GetPage(0, -1), typeof(ArgumentOutOfRangeException), "index");
        yield return new("SimFile.GetPage(Pages)", f => f.File.GetPage(0, f.File.Pages), typeof(ArgumentOutOfRangeException), "index");

        // Address spaces.
        yield return new("AddressSpace(null machine)", _ => new AddressSpace(null!, new MmapLockStrategy()), typeof(ArgumentNullException), "machine");
        yield return new("AddressSpace(null strategy)", f => new AddressSpace(f.Machine, null!), typeof(ArgumentNullException), "strategy");
        yield return new("Map length 0", f => f.OnCpu(c => f.Mm.Map(c, 0, Protection.ReadWrite)), typeof(ArgumentException), "length");
        yield return new("Map length 4095", f => f.OnCpu(c => f.Mm.Map(c, 4095, Protection.ReadWrite)), typeof(ArgumentException), "length");
        yield return new("Map unknown protection", f => f.OnCpu(c => f.Mm.Map(c, Page, (Protection)8)), typeof(ArgumentException), "protection");
        yield return new("Map unknown kind", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, (MappingKind)9, f.File)), typeof(ArgumentOutOfRangeException), "kind");
        yield return new("Map anonymous with a file", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, MappingKind.Anonymous, f.File)), typeof(ArgumentException), "file");
        yield return new("Map private file without a file", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, MappingKind.PrivateFile)), typeof(ArgumentNullException), "file");
        yield return new("Map file offset unaligned", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, MappingKind.SharedFile, f.File, 100)), typeof(ArgumentOutOfRangeException), "fileOffset");
        yield return new("Map file range past the end", f => f.OnCpu(c => f.Mm.Map(c, 2 * Page, Protection.Read, MappingKind.SharedFile, f.File, f.File.Length - (long)Page)), typeof(ArgumentOutOfRangeException), "fileOffset");
        yield return new("Map shared writable of a read-only file", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.ReadWrite, MappingKind.SharedFile, f.ReadOnlyFile)), typeof(ArgumentException), "protection");
        yield return new("Map fixed unaligned", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, fixedAddress: 0x4000_0010)), typeof(ArgumentException), "fixedAddress");
        yield return new("Map fixed below MinAddress", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, fixedAddress: 0)), typeof(ArgumentOutOfRangeException), "fixedAddress");
        yield return new("Map fixed past user space", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, fixedAddress: PageTable.UserTop)), typeof(ArgumentOutOfRangeException), "fixedAddress");
        yield return new("Map fixed over a mapping", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, fixedAddress: f.Mapped)), typeof(ArgumentException), "fixedAddress");
        yield return new("Map from a thread that is not the CPU's", f => f.Mm.Map(f.Machine.Cpu(0), Page, Protection.Read), typeof(InvalidOperationException));
        yield return new("TryRead from a thread that is not the CPU's", f => f.Mm.TryRead(f.Machine.Cpu(0), f.Mapped, out ulong _), typeof(InvalidOperationException));
        yield return new("Map length wrapping the address space", f => f.OnCpu(c => f.Mm.Map(c, ulong.MaxValue - Page + 1, Protection.Read)), typeof(ArgumentOutOfRangeException), "length");
        yield return new("Map file offset near 2^63", f => f.OnCpu(c => f.Mm.Map(c, Page, Protection.Read, MappingKind.PrivateFile, f.File, long.MaxValue - (long)Page + 1)), typeof(ArgumentOutOfRangeException), "fileOffset");
        yield return new("Map a disposed file", f => f.OnCpu(c =>
        {
            var gone = new SimFile(f.Machine, (long)Page);
            gone.Dispose();
            f.Mm.Map(c, Page, Protection.Read, MappingKind.PrivateFile, gone);
        }), typeof(ObjectDisposedException));
        yield return new("Map with irqs off", f => f.OnCpu(c => WithIrqsOff(c, () => f.Mm.Map(c, Page, Protection.Read))), typeof(InvalidOperationException));
        yield return new("Unmap with irqs off", f => f.OnCpu(c => WithIrqsOff(c, () => f.Mm.Unmap(c, f.Mapped, Page))), typeof(InvalidOperationException));
        yield return new("Protect with irqs off", f => f.OnCpu(c => WithIrqsOff(c, () => f.Mm.Protect(c, f.Mapped, Page, Protection.Read))), typeof(InvalidOperationException));
        yield return new("DontNeed with irqs off", f => f.OnCpu(c => WithIrqsOff(c, () => f.Mm.DontNeed(c, f.Mapped, Page))), typeof(InvalidOperationException));
        yield return new("Machine.Attach(-1)", f => f.Machine.Attach(-1), typeof(ArgumentOutOfRangeException), "cpu");
        yield return new("Machine.Attach on a CPU's thread", f => f.OnCpu(_ => f.Machine.Attach(1)), typeof(InvalidOperationException));
        yield return new("Machine.Dispose on a CPU's thread", f => f.OnCpu(_ => f.Machine.Dispose()), typeof(InvalidOperationException));
        yield return new("Map with another machine's CPU", f =>
        {
            using var other = new Machine(new MachineOptions { CpuCount = 1, MemoryBytes = 1L << 20 });
            Exception? thrown = other.Run(0, c =>
            {
                try
                {
                    f.Mm.Map(c, Page, Protection.Read);
                    return null;
                }
                catch (Exception e)
                {
                    return e;
                }
            });
            if (thrown != null)
            {
                throw thrown;
            }
        }, typeof(ArgumentException), "cpu");
        yield return new("Unmap unaligned", f => f.OnCpu(c => f.Mm.Unmap(c, f.Mapped + 8, Page)), typeof(ArgumentException), "start");
        yield return new("Unmap length 0", f => f.OnCpu(c => f.Mm.Unmap(c, f.Mapped, 0)), typeof(ArgumentException), "length");
        yield return new("Protect a hole", f => f.OnCpu(c => f.Mm.Protect(c, f.Mapped, 64 * Page, Protection.Read)), typeof(UnmappedRangeException), "start");
        yield return new("Protect unknown protection", f => f.OnCpu(c => f.Mm.Protect(c, f.Mapped, Page, (Protection)8)), typeof(ArgumentException), "protection");
        yield return new("Protect a read-only file's shared mapping writable", f => f.OnCpu(c => f.Mm.Protect(c, f.ReadOnlyMapped, Page, Protection.ReadWrite)), typeof(ArgumentException), "protection");
        yield return new("DontNeed a hole", f => f.OnCpu(c => f.Mm.DontNeed(c, f.Mapped, 64 * Page)), typeof(UnmappedRangeException), "start");
        yield return new("DontNeed past user space", f => f.OnCpu(c => f.Mm.DontNeed(c, PageTable.UserTop - Page, 2 * Page)), typeof(ArgumentOutOfRangeException), "start");
        yield return new("TryRead<ulong> crossing a page", f => f.OnCpu(c => f.Mm.TryRead(c, f.Mapped + Page - 4, out ulong _)), typeof(ArgumentException), "address");
        yield return new("TryWrite<ulong> crossing a page", f => f.OnCpu(c => f.Mm.TryWrite(c, f.Mapped + Page - 4, 1UL)), typeof(ArgumentException), "address");
        yield return new("Read<ulong> of an unmapped address", f => f.OnCpu(c => f.Mm.Read<ulong>(c, 0x7000_0000)), typeof(SegmentationFaultException));
        yield return new("Write to a read-only mapping", f => f.OnCpu(c => f.Mm.Write(c, f.ReadOnlyMapped, 1UL)), typeof(SegmentationFaultException));
        yield return new("InvariantChecker.FindViolations(null)", _ => InvariantChecker.FindViolations(null!), typeof(ArgumentNullException), "mm");

        // Synchronization primitives.
        yield return new("Srcu(0 CPUs)", _ => new Srcu(0), typeof(ArgumentOutOfRangeException), "cpuCount");
        yield return new("Srcu.ReadUnlock index 2", f => f.Machine.Srcu.ReadUnlock(0, 2), typeof(ArgumentOutOfRangeException), "idx");
        yield return new("Srcu.ReadUnlock index -1", f => f.Machine.Srcu.ReadUnlock(0, -1), typeof(ArgumentOutOfRangeException), "idx");
        yield return new("Srcu.Defer(null)", f => f.Machine.Srcu.Defer(null!, null), typeof(ArgumentNullException), "callback");
        yield return new("PerCpu(0)", _ => new PerCpu<long>(0), typeof(ArgumentOutOfRangeException), "count");
        yield return new("PerCpu[count]", _ =>
        {
            using var p = new PerCpu<long>(2);
            p[2] = 1;
        }, typeof(ArgumentOutOfRangeException), "cpu");
        yield return new("PerCpu[-1]", _ =>
        {
            using var p = new PerCpu<long>(2);
            p[-1] = 1;
        }, typeof(ArgumentOutOfRangeException), "cpu");
        yield return new("RwSemaphore.ReadUnlock unheld", _ => new RwSemaphore().ReadUnlock(), typeof(SynchronizationLockException));
        yield return new("RwSemaphore.WriteUnlock unheld", _ => new RwSemaphore().WriteUnlock(), typeof(SynchronizationLockException));
        yield return new("RwSemaphore.DowngradeWrite unheld", _ => new RwSemaphore().DowngradeWrite(), typeof(SynchronizationLockException));
        yield return new("RwSemaphore.WriteUnlock from another thread", _ =>
        {
            var sem = new RwSemaphore();
            sem.WriteLock();
            try
            {
                Task.Run(sem.WriteUnlock).GetAwaiter().GetResult();
            }
            finally
            {
                sem.WriteUnlock();
            }
        }, typeof(SynchronizationLockException));
        yield return new("PtLock.Unlock unheld", _ =>
        {
            var l = default(PtLock);
            l.Unlock(1);
        }, typeof(SynchronizationLockException));
        yield return new("PtLock.Unlock by another owner", _ =>
        {
            var l = default(PtLock);
            l.Lock(1, null);
            l.Unlock(2);
        }, typeof(SynchronizationLockException));
        yield return new("PtLock.Lock twice by one owner", _ =>
        {
            var l = default(PtLock);
            l.Lock(1, null);
            l.Lock(1, null);
        }, typeof(SynchronizationLockException));
        yield return new("SeqCount.WriteEnd without WriteBegin", _ =>
        {
            var s = default(SeqCount);
            s.WriteEnd();
        }, typeof(SynchronizationLockException));
        yield return new("SeqCount.WriteBegin twice", _ =>
        {
            var s = default(SeqCount);
            s.WriteBegin();
            s.WriteBegin();
        }, typeof(SynchronizationLockException));

        // Workloads and strategies.
        yield return new("PageFault1(0)", _ => new PageFault1(0), typeof(ArgumentOutOfRangeException), "mappingBytes");
        yield return new("PageFault2(4095)", _ => new PageFault2(4095), typeof(ArgumentOutOfRangeException), "mappingBytes");
        yield return new("PageFault3(-4096)", _ => new PageFault3(-4096), typeof(ArgumentOutOfRangeException), "mappingBytes");
        yield return new("DatabaseLoad(slice 0)", _ => new DatabaseLoad(0), typeof(ArgumentOutOfRangeException), "sliceBytes");
        yield return new("DatabaseLoad(writer rate NaN)", _ => new DatabaseLoad(writerOpsPerSecond: double.NaN), typeof(ArgumentOutOfRangeException), "writerOpsPerSecond");
        yield return new("DatabaseLoad(writer region 100)", _ => new DatabaseLoad(writerRegionBytes: 100), typeof(ArgumentOutOfRangeException), "writerRegionBytes");
        yield return new("Ebizzy(chunk 0)", _ => new Ebizzy(0), typeof(ArgumentOutOfRangeException), "chunkBytes");
        yield return new("Ebizzy(0 searches)", _ => new Ebizzy(searchesPerChunk: 0), typeof(ArgumentOutOfRangeException), "searchesPerChunk");
        yield return new("Workload.Setup(null machine)", _ => new PageFault1((long)Page).Setup(null!, new MmapLockStrategy(), 1), typeof(ArgumentNullException), "machine");
        yield return new("Workload.Setup(null strategy)", f => new Ebizzy((long)Page).Setup(f.Machine, null, 1), typeof(ArgumentNullException), "strategy");
        yield return new("WorkloadCatalog.TryCreate(null)", _ => WorkloadCatalog.TryCreate(null!), typeof(ArgumentNullException), "name");
        yield return new("StrategyCatalog.TryCreate(null)", _ => StrategyCatalog.TryCreate(null!), typeof(ArgumentNullException), "name");

        // Scaling harness.
        yield return new("ScalingExperiment(null)", _ => new ScalingExperiment(null!), typeof(ArgumentNullException), "options");
        yield return new("ScalingOptions: no workloads", _ => new ScalingExperiment(new ScalingOptions { Strategies = [new MmapLockStrategy()] }), typeof(ArgumentException), "options");
        yield return new("ScalingOptions: no strategies", _ => new ScalingExperiment(new ScalingOptions { Workloads = [new Ebizzy()], ThreadCounts = [1] }), typeof(ArgumentException), "options");
        yield return new("ScalingOptions: 0 threads", _ => new ScalingExperiment(Scaling(o => o.ThreadCounts = [0])), typeof(ArgumentException), "options");
        yield return new("ScalingOptions: more threads than cores", _ => new ScalingExperiment(Scaling(o => o.ThreadCounts = [Affinity.AllowedCores.Count + 1])), typeof(ArgumentException), "options");
        yield return new("ScalingOptions: 65 threads oversubscribed", _ => new ScalingExperiment(Scaling(o => (o.ThreadCounts, o.Oversubscribe) = ([65], true))), typeof(ArgumentException), "options");
        yield return new("ScalingOptions: 0 repeats", _ => new ScalingExperiment(Scaling(o => o.Repeats = 0)), typeof(ArgumentException), "options");
        yield return new("ScalingOptions: zero duration", _ => new ScalingExperiment(Scaling(o => o.Duration = TimeSpan.Zero)), typeof(ArgumentException), "options");
        yield return new("ScalingOptions: negative warm-up", _ => new ScalingExperiment(Scaling(o => o.Warmup = TimeSpan.FromSeconds(-1))), typeof(ArgumentException), "options");

        // Stress mode.
        yield return new("StressRun.Run(null)", _ => StressRun.Run(null!), typeof(ArgumentNullException), "options");
        yield return new("StressOptions.CpuCount = 0", _ => StressRun.Run(new StressOptions { CpuCount = 0 }), typeof(ArgumentOutOfRangeException), "CpuCount");
        yield return new("StressOptions.RoundDuration = 0", _ => StressRun.Run(new StressOptions { RoundDuration = TimeSpan.Zero }), typeof(ArgumentOutOfRangeException), "RoundDuration");
        yield return new("StressOptions.Strategies empty", _ => StressRun.Run(new StressOptions { Strategies = [] }), typeof(ArgumentException), "Strategies");
        yield return new("StressOptions.Strategies unknown", _ => StressRun.Run(new StressOptions { Strategies = ["no-such"] }), typeof(ArgumentException), "Strategies");
    }

    /// <summary>Valid scaling options, changed by <paramref name="change"/> (ScalingOptions is init-only: copy through a builder).</summary>
    private static ScalingOptions Scaling(Action<ScalingBuilder> change)
    {
        var b = new ScalingBuilder();
        change(b);
        return new ScalingOptions
        {
            Workloads = [new Ebizzy()],
            Strategies = [new MmapLockStrategy()],
            ThreadCounts = b.ThreadCounts,
            Repeats = b.Repeats,
            Duration = b.Duration,
            Warmup = b.Warmup,
            Oversubscribe = b.Oversubscribe,
        };
    }

    private sealed class ScalingBuilder
    {
        public IList<int> ThreadCounts { get; set; } = [1];

        public int Repeats { get; set; } = 1;

        public TimeSpan Duration { get; set; } = TimeSpan.FromMilliseconds(100);

        public TimeSpan Warmup { get; set; } = TimeSpan.Zero;

        public bool Oversubscribe { get; set; }
    }

    [Fact]
    public void EveryRowOfBadInputThrowsItsExceptionAndLeavesTheModelIntact()
    {
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 32L << 20 });
        long freeBefore = machine.Memory.Census().Free;
        var file = new SimFile(machine, 8 * (long)Page);
        var readOnlyFile = new SimFile(machine, 4 * (long)Page, writable: false);
        var mm = new AddressSpace(machine, new SpeculativeStrategy());
        (ulong mapped, ulong readOnlyMapped) = machine.Run(0, cpu =>
        {
            ulong a = mm.Map(cpu, 4 * Page, Protection.ReadWrite, fixedAddress: 0x4000_0000);
            for (ulong p = 0; p < 4; p++)
            {
                mm.Write(cpu, a + (p * Page), 0xC0FFEE00UL + p);
            }

            ulong r = mm.Map(cpu, Page, Protection.Read, MappingKind.SharedFile, readOnlyFile);
            _ = mm.Read<ulong>(cpu, r);
            return (a, r);
        });
        var f = new Fixture { Machine = machine, Mm = mm, File = file, ReadOnlyFile = readOnlyFile, Mapped = mapped, ReadOnlyMapped = readOnlyMapped };

        var failures = new List<string>();
        int rows = 0;
        foreach (Row row in Rows())
        {
            rows++;
            Exception? thrown = null;
            try
            {
                row.Act(f);
            }
            catch (Exception e)
            {
                thrown = e;
            }

            string? wrong = thrown == null ? "nothing was thrown"
                : thrown.GetType() != row.Expected ? $"threw {thrown.GetType().Name} ({thrown.Message})"
                : row.Param != null && (thrown as ArgumentException)?.ParamName != row.Param ? $"named parameter '{(thrown as ArgumentException)?.ParamName}'"
                : null;
            output.WriteLine($"{(wrong == null ? "ok  " : "FAIL")} {row.Api}: {row.Expected.Name}{(row.Param != null ? $" ({row.Param})" : string.Empty)}{(wrong != null ? " — " + wrong : string.Empty)}");
            if (wrong != null)
            {
                failures.Add($"{row.Api}: expected {row.Expected.Name}{(row.Param != null ? $" naming '{row.Param}'" : string.Empty)}, {wrong}");
            }
        }

        Assert.True(failures.Count == 0, $"{failures.Count} of {rows} rows: " + string.Join(Environment.NewLine, failures));

        // Nothing leaked, nothing corrupted: data, irq depth, invariants, frames.
        machine.RunOnAll(cpu =>
        {
            Assert.False(cpu.IrqsDisabled);
            if (cpu.Id == 0)
            {
                for (ulong p = 0; p < 4; p++)
                {
                    Assert.Equal(0xC0FFEE00UL + p, mm.Read<ulong>(cpu, mapped + (p * Page)));
                }
            }
        });
        Assert.Empty(InvariantChecker.FindViolations(machine, [mm], [file, readOnlyFile]));
        Assert.Empty(machine.Violations);
        mm.Dispose();
        file.Dispose();
        readOnlyFile.Dispose();
        machine.Srcu.Barrier();
        Assert.Equal(freeBefore, machine.Memory.Census().Free);
        output.WriteLine($"{rows} rows, all as expected; invariants hold and every frame came back");
    }

    private static void WithIrqsOff(Cpu cpu, Action act)
    {
        cpu.LocalIrqDisable();
        try
        {
            act();
        }
        finally
        {
            cpu.LocalIrqEnable();
        }
    }
}
