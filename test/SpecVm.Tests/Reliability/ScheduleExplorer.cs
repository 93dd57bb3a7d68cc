using SpecVm.Faults;
using SpecVm.Memory;
using SpecVm.Mm;
using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Tests.Reliability;

/// <summary>The address-space operation that races the speculative fault in a schedule.</summary>
public enum WriterOp
{
    /// <summary>Unmap the 2 MiB region holding the faulting page (its PTE table is freed).</summary>
    Unmap,

    /// <summary>Make the region read-only.</summary>
    ProtectReadOnly,

    /// <summary>DONTNEED the region (zap, keep the VMA).</summary>
    DontNeed,
}

/// <summary>The bugs a schedule can plant.</summary>
public enum Plant
{
    /// <summary>The correct protocol.</summary>
    None,

    /// <summary>The speculative path skips its sequence-count recheck under the PTL.</summary>
    NoSeqRecheck,

    /// <summary>Retired VMAs go back to the slab without a grace period.</summary>
    NoGracePeriod,

    /// <summary>Unmap frees page tables before the shootdown is acknowledged.</summary>
    FreeTablesBeforeShootdown,

    /// <summary>The speculative path spins on the PTL with interrupts disabled instead of trylock.</summary>
    SpinOnPtl,
}

/// <summary>One deterministic schedule: where each side parks, and which side is released first.</summary>
/// <remarks><see cref="ZapBatch"/> 1 makes the writer flush while holding the PTL (the hazard); 4096 lets it reach its
/// later hook points with the PTL released.</remarks>
internal readonly record struct Schedule(HookPoint FaultPoint, HookPoint WriterPoint, bool FaultFirst, WriterOp Op, int ZapBatch)
{
    public override string ToString() => $"{Op}: fault@{FaultPoint} writer@{WriterPoint} {(FaultFirst ? "fault-first" : "writer-first")} zap-batch {ZapBatch}";
}

/// <summary>
/// A small deterministic scheduler over the interleaving hooks: CPU 0 takes a speculative write fault and parks at one
/// hook point, CPU 1 runs Unmap/Protect/DontNeed and parks at another (or gets stuck, e.g. waiting for CPU 0's TLB
/// ack), then the two are released in a chosen order. Every combination of points and orders is one schedule; after
/// each the invariants are checked. Rare orders are tried deliberately rather than by luck.
/// </summary>
internal static class ScheduleExplorer
{
    public static readonly HookPoint[] FaultPoints =
        [HookPoint.SpecAfterLookup, HookPoint.SpecAfterSeqRead, HookPoint.SpecBeforePtlTryLock, HookPoint.SpecBeforeRecheck];

    public static readonly HookPoint[] WriterPoints =
        [HookPoint.WriterBeforeIndexPublish, HookPoint.WriterAfterIndexPublish, HookPoint.WriterBetweenZapAndShootdown, HookPoint.WriterAfterShootdown];

    private static readonly TimeSpan Stuck = TimeSpan.FromMilliseconds(60);

    public static IEnumerable<Schedule> All(WriterOp op)
    {
        foreach (HookPoint f in FaultPoints)
        {
            foreach (HookPoint w in WriterPoints)
            {
                if (op != WriterOp.Unmap && w is HookPoint.WriterBeforeIndexPublish or HookPoint.WriterAfterIndexPublish && op == WriterOp.DontNeed)
                {
                    continue; // DontNeed publishes no index.
                }

                foreach (int batch in new[] { 4096, 1 })
                {
                    yield return new Schedule(f, w, true, op, batch);
                    yield return new Schedule(f, w, false, op, batch);
                }
            }
        }
    }

    /// <summary>Runs one schedule and returns the violations found (empty when the invariants hold).</summary>
    /// <param name="s">The schedule.</param>
    /// <param name="plant">The planted bug, if any.</param>
    /// <param name="targeted">Run the address space with targeted shootdowns.</param>
    public static List<string> Run(Schedule s, Plant plant, bool targeted = false)
    {
        var violations = new List<string>();
        using var machine = new Machine(new MachineOptions { CpuCount = 2, MemoryBytes = 64L << 20, WatchdogTimeout = TimeSpan.FromSeconds(1) });
        var strategy = new SpeculativeStrategy { PlantSkipSeqRecheck = plant == Plant.NoSeqRecheck, SpinOnPtl = plant == Plant.SpinOnPtl };
        long freeAtStart = machine.Memory.Census().Free;
        var mm = new AddressSpace(machine, strategy, new AddressSpaceOptions { ZapBatchPages = s.ZapBatch, PoisonRetiredVmas = true, TargetedShootdowns = targeted });
        mm.Slab.PlantSkipGracePeriod = plant == Plant.NoGracePeriod;
        mm.PlantFreeTablesBeforeShootdown = plant == Plant.FreeTablesBeforeShootdown;

        // Two VMAs: the victim (first 2 MiB region) and a neighbour (next region) that keeps the address space busy.
        const ulong Region = 2 << 20;
        ulong victim = 0;
        machine.Run(0, cpu =>
        {
            victim = mm.Map(cpu, 2 * Region, Protection.ReadWrite, fixedAddress: 0x4000_0000);
            mm.Write(cpu, victim, 1UL);           // PTE table of the victim region exists; page 0 present
            mm.Write(cpu, victim + Region, 2UL);   // neighbour page present
        });
        machine.Run(1, cpu => mm.Read<ulong>(cpu, victim)); // CPU 1 joins the CPU mask
        ulong target = victim + 4096;

        using var faultParked = new ManualResetEventSlim();
        using var releaseFault = new ManualResetEventSlim();
        using var writerParked = new ManualResetEventSlim();
        using var releaseWriter = new ManualResetEventSlim();
        int faultHits = 0;
        int writerHits = 0;
        machine.Hooks.Handler = (point, cpu) =>
        {
            if (cpu.Id == 0 && point == s.FaultPoint && Interlocked.Increment(ref faultHits) == 1)
            {
                faultParked.Set();
                Park(cpu, releaseFault);
            }
            else if (cpu.Id == 1 && point == s.WriterPoint && Interlocked.Increment(ref writerHits) == 1)
            {
                writerParked.Set();
                Park(cpu, releaseWriter);
            }

            return HookAction.Continue;
        };

        AccessResult faultResult = AccessResult.Ok;
        Task fault = Task.CompletedTask;
        void StartFault() => fault = machine.RunAsync(0, cpu => faultResult = mm.TryWrite(cpu, target, 0xABUL));
        Task writer = Task.CompletedTask;
        void StartWriter() => writer = machine.RunAsync(1, cpu =>
        {
            switch (s.Op)
            {
                case WriterOp.Unmap:
                    mm.Unmap(cpu, victim, Region);
                    break;
                case WriterOp.ProtectReadOnly:
                    mm.Protect(cpu, victim, Region, Protection.Read);
                    break;
                default:
                    mm.DontNeed(cpu, victim, Region);
                    break;
            }
        });

        if (s.FaultFirst)
        {
            StartFault();
            faultParked.Wait(Stuck);           // the fault parks at its point (or took another path)
            StartWriter();
            writerParked.Wait(Stuck);          // the writer parks at its point, or is stuck (e.g. waiting for our ack)
            releaseFault.Set();
            WaitQuietly(fault);                // it may need the writer (e.g. falls back to the mmap lock): go on
            releaseWriter.Set();
        }
        else
        {
            StartWriter();
            writerParked.Wait(Stuck);
            StartFault();
            faultParked.Wait(Stuck);
            releaseWriter.Set();
            WaitQuietly(writer);               // it may need the fault (e.g. its TLB ack): go on
            releaseFault.Set();
        }

        WaitOrNote(fault, "fault", violations);
        WaitOrNote(writer, "writer", violations);
        machine.Hooks.Handler = null;
        if (violations.Count > 0)
        {
            // A hung schedule: say so, and leave the machine to the finalizer-free Dispose path only if the CPUs are free.
            return violations;
        }

        // Invariants: every present PTE lies in a VMA and is no wider than it; the written value is where it belongs.
        violations.AddRange(PteViolations(mm));
        if (s.Op != WriterOp.Unmap && faultResult == AccessResult.Ok)
        {
            ulong seen = machine.Run(0, cpu => mm.Read<ulong>(cpu, target));
            if (s.Op == WriterOp.ProtectReadOnly && seen != 0xAB)
            {
                violations.Add($"write that succeeded is lost: read 0x{seen:x}");
            }
        }

        if (s.Op == WriterOp.ProtectReadOnly && faultResult == AccessResult.Ok)
        {
            // The write succeeded, so it must have happened before the protection change (the page is then present, read-only).
        }

        violations.AddRange(machine.Violations);
        machine.Run(0, cpu => mm.Unmap(cpu, victim, 2 * Region));
        violations.AddRange(PteViolations(mm));
        machine.Srcu.Barrier();
        if (mm.Slab.PoisonedReads != 0)
        {
            violations.Add($"{mm.Slab.PoisonedReads} reads of a retired VMA after it was freed");
        }

        mm.Dispose();
        FrameCensus census = machine.Memory.Census();
        if (census.Free != freeAtStart)
        {
            violations.Add($"frames lost: {freeAtStart - census.Free} ({census})");
        }

        return violations;
    }

    /// <summary>
    /// Parks a CPU at a hook until released. A parked CPU is still running (not asleep, not lazy): with interrupts
    /// enabled it keeps serving IPIs, as a CPU preempted in kernel code with interrupts on would; with interrupts
    /// disabled it serves nothing.
    /// </summary>
    private static void Park(Cpu cpu, ManualResetEventSlim release)
    {
        while (!release.Wait(1))
        {
            cpu.Poll();
        }
    }

    private static void WaitQuietly(Task t)
    {
        try
        {
            t.Wait(Stuck);
        }
        catch (AggregateException)
        {
            // Reported by WaitOrNote below.
        }
    }

    private static void WaitOrNote(Task t, string who, List<string> violations)
    {
        try
        {
            if (!t.Wait(TimeSpan.FromSeconds(5)))
            {
                violations.Add($"{who} hung for 5 s (deadlock)");
            }
        }
        catch (AggregateException ae) when (ae.InnerException is CpuException ce)
        {
            violations.Add($"{who} failed: {ce.InnerException?.GetType().Name}: {ce.InnerException?.Message}");
        }
    }

    private static IEnumerable<string> PteViolations(AddressSpace mm)
    {
        var found = new List<string>();
        IReadOnlyList<Vma> vmas = mm.Vmas.SnapshotLive();
        mm.PageTable.ForEachPresent((va, pte) =>
        {
            Vma? v = vmas.FirstOrDefault(x => x.Start <= va && va < x.End);
            if (v == null)
            {
                found.Add($"present PTE at 0x{va:x} ({pte}) outside every VMA");
            }
            else if (pte.IsWritable && (v.Protection & Protection.Write) == 0)
            {
                found.Add($"writable PTE at 0x{va:x} in read-only {v}");
            }
        });
        return found;
    }
}
