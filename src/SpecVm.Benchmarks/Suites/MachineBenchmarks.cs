using System.Runtime.CompilerServices;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Benchmarks.Suites;

/// <summary>
/// The machine's hot paths: a simulated access on a TLB hit against a plain native store to the same bytes; a lockless
/// page walk and a TLB miss with refill against the TLB hit; a TLB shootdown round trip to one other CPU against
/// <see cref="Interlocked.MemoryBarrierProcessWide"/> (the runtime's IPI-based process-wide barrier).
/// </summary>
/// <remarks>
/// BenchmarkDotNet drives its own thread, so the benchmarks act as CPU 0 from that thread, pinned to CPU 0's core;
/// CPU 0's own thread sits idle there (lazy, blocked on its empty work queue) and never touches CPU 0's state
/// meanwhile. The thread check in <see cref="AddressSpace"/> is compiled only into Debug builds. For the
/// shootdown, CPU 1 runs on its own thread, in the address space's CPU mask, spinning on <see cref="Cpu.Poll"/>
/// (an awake CPU with interrupts enabled). Loops run <see cref="Ops"/> operations per invocation so that the call
/// overhead of the harness does not swamp nanosecond operations.
/// <para>Diagnosers and exporters come from the shared <see cref="BenchConfig"/> that the <c>bdn</c> command passes to the switcher.</para>
/// </remarks>
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
[Config(typeof(BenchConfig))]
public unsafe class MachineBenchmarks
{
    /// <summary>Operations per invocation of the looped benchmarks.</summary>
    public const int Ops = 1000;

    private const string Access = "Access";
    private const string Translation = "Translation";
    private const string Shootdown = "Shootdown";

    private Machine _machine = null!;
    private AddressSpace _mm = null!;
    private Cpu _cpu = null!;
    private CpuAttachment? _attachment;
    private ulong _va;
    private ulong _vpn;
    private byte* _frame;
    private Task? _poller;
    private int _stopPoller;

    /// <summary>Builds a 2-CPU machine, maps one page and faults it in on CPU 0 (so CPU 0's TLB holds it).</summary>
    [GlobalSetup(Targets = [nameof(NativeStore), nameof(TlbHitWrite), nameof(TlbHitRead), nameof(PageWalk), nameof(TlbMissAndFill)])]
    public void Setup()
    {
        // CPU threads pinned (CPU 0 to the first allowed core, CPU 1 to the second), and the benchmark thread pinned
        // beside idle CPU 0: without it the scheduler may put the initiator on the poller's core, and a shootdown then
        // waits a time slice for the poller to run.
        _machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 64L << 20, Pin = true });
        Affinity.TryPinCurrentThread(Affinity.AllowedCores[0]);
        _mm = new AddressSpace(_machine, new MmapLockStrategy());
        _va = _machine.Run(0, cpu =>
        {
            ulong a = _mm.Map(cpu, 4096, Protection.ReadWrite);
            _mm.Write(cpu, a + 64, 1UL);
            return a;
        });
        // This thread runs as CPU 0 from here on (CPU 0's own thread parks): accesses are measured on this thread.
        _attachment = _machine.Attach(0);
        _cpu = _attachment.Cpu;
        _vpn = _va >> 12;
        ulong* entry = _mm.PageTable.WalkLockless(_va, out _);
        _frame = _machine.Memory.FrameData(new Paging.Pte(Volatile.Read(ref *entry)).Pfn) + 64;
        if (_mm.TryRead(_cpu, _va + 64, out ulong _) != AccessResult.Ok || !_cpu.Tlb.Contains(_vpn))
        {
            throw new InvalidOperationException("The page is not in CPU 0's TLB after setup.");
        }
    }

    /// <summary>As <see cref="Setup"/>, then starts CPU 1 polling in the address space's CPU mask.</summary>
    [GlobalSetup(Targets = [nameof(ProcessWideBarrier), nameof(ShootdownOneCpu)])]
    public void SetupShootdown()
    {
        Setup();
        int loaded = 0;
        _poller = _machine.RunAsync(1, cpu =>
        {
            cpu.SwitchTo(_mm.TlbContext);
            Volatile.Write(ref loaded, 1);
            while (Volatile.Read(ref _stopPoller) == 0)
            {
                cpu.Poll();
            }
        });
        SpinWait.SpinUntil(() => Volatile.Read(ref loaded) != 0);
    }

    /// <summary>Stops CPU 1 if it polls, and frees the machine.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        Volatile.Write(ref _stopPoller, 1);
        _poller?.Wait();
        _attachment?.Dispose();
        _mm.Dispose();
        _machine.Dispose();
    }

    /// <summary>Baseline: a plain store to the frame's bytes, no MMU.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    [BenchmarkCategory(Access)]
    public void NativeStore()
    {
        byte* p = _frame;
        for (int i = 0; i < Ops; i++)
        {
            Unsafe.WriteUnaligned(p, (ulong)i);
        }
    }

    /// <summary>A simulated 8-byte write that hits CPU 0's TLB.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    [BenchmarkCategory(Access)]
    public AccessResult TlbHitWrite()
    {
        // Fields hoisted into locals, as NativeStore hoists its pointer: otherwise the loop reloads them from the
        // benchmark object every iteration (the stores through the MMU may alias them), which is harness cost.
        AddressSpace mm = _mm;
        Cpu cpu = _cpu;
        ulong va = _va + 64;
        AccessResult r = AccessResult.Ok;
        for (int i = 0; i < Ops; i++)
        {
            r |= mm.TryWrite(cpu, va, (ulong)i);
        }

        return r;
    }

    /// <summary>Baseline of the translation group: a simulated 8-byte read that hits the TLB.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Ops)]
    [BenchmarkCategory(Translation)]
    public ulong TlbHitRead()
    {
        AddressSpace mm = _mm;
        Cpu cpu = _cpu;
        ulong va = _va + 64;
        ulong sum = 0;
        for (int i = 0; i < Ops; i++)
        {
            mm.TryRead(cpu, va, out ulong v);
            sum += v;
        }

        return sum;
    }

    /// <summary>A four-level lockless walk of a present page (no TLB involved).</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    [BenchmarkCategory(Translation)]
    public ulong PageWalk()
    {
        Paging.PageTable table = _mm.PageTable;
        ulong va = _va;
        ulong sum = 0;
        for (int i = 0; i < Ops; i++)
        {
            sum += (ulong)table.WalkLockless(va, out _);
        }

        return sum;
    }

    /// <summary>Drops the page's TLB entry, then reads it: miss, lockless walk, fill.</summary>
    [Benchmark(OperationsPerInvoke = Ops)]
    [BenchmarkCategory(Translation)]
    public ulong TlbMissAndFill()
    {
        AddressSpace mm = _mm;
        Cpu cpu = _cpu;
        ulong va = _va + 64;
        ulong vpn = _vpn;
        ulong sum = 0;
        for (int i = 0; i < Ops; i++)
        {
            cpu.Tlb.FlushPage(vpn);
            mm.TryRead(cpu, va, out ulong v);
            sum += v;
        }

        return sum;
    }

    /// <summary>Baseline: the runtime's process-wide memory barrier (membarrier/FlushProcessWriteBuffers, an OS IPI).</summary>
    [Benchmark(Baseline = true)]
    [BenchmarkCategory(Shootdown)]
    public void ProcessWideBarrier() => Interlocked.MemoryBarrierProcessWide();

    /// <summary>A one-page shootdown from CPU 0: bump the generation, flush locally, IPI CPU 1, wait for its ack.</summary>
    [Benchmark]
    [BenchmarkCategory(Shootdown)]
    public void ShootdownOneCpu() => _cpu.Shootdown(_mm.TlbContext, _va, _va + 4096);
}
