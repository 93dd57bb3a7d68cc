// A consumer of the SpecVm NuGet package: build a machine, map memory in one address space, fault it in from every
// CPU with each strategy, and print what happened; then run a strategy of our own (VmaLockOrMmapLock.cs, the guide's
// "A strategy that does its own locking"), written against the package's public API.
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

const ulong Size = 8 << 20;
FaultStrategy[] strategies = [new MmapLockStrategy(), new SpeculativeStrategy(), new PerVmaLockStrategy()];
using var machine = new Machine(new MachineOptions { MemoryBytes = 256L << 20 });
Console.WriteLine($"machine: {machine.CpuCount} CPUs, {machine.Memory.Bytes >> 20} MiB");
foreach (FaultStrategy strategy in strategies)
{
    using var mm = new AddressSpace(machine, strategy);
    ulong region = machine.Run(0, cpu => mm.Map(cpu, Size * (ulong)machine.CpuCount, Protection.ReadWrite));
    CounterSnapshot before = machine.Snapshot();
    machine.RunOnAll(cpu =>
    {
        ulong slice = region + (Size * (ulong)cpu.Id);
        for (ulong off = 0; off < Size; off += 4096)
        {
            mm.Write(cpu, slice + off, (ulong)cpu.Id);
        }
    });
    CounterSnapshot d = machine.Snapshot().Minus(before);
    long bad = machine.Run(0, cpu =>
    {
        long mismatches = 0;
        for (int id = 0; id < machine.CpuCount; id++)
        {
            for (ulong off = 0; off < Size; off += 4096)
            {
                mismatches += mm.Read<ulong>(cpu, region + (Size * (ulong)id) + off) == (ulong)id ? 0 : 1;
            }
        }

        mm.Unmap(cpu, region, Size * (ulong)machine.CpuCount);
        return mismatches;
    });
    Console.WriteLine($"{strategy.Name,-14} faults {d[CpuCounter.Faults],6}  speculative ok {d[CpuCounter.SpecSuccess],6}  per-vma ok {d[CpuCounter.VmaLockSuccess],6}  mmap-lock faults {d[CpuCounter.MmapLockFaults],6}  mismatches {bad}");
    if (bad != 0)
    {
        return 1;
    }
}

// Our own strategy: two writes into a fresh anonymous VMA. The first needs the VMA's anon_vma, which only the mmap lock
// may create, so it retries there; the second finds it and completes under the VMA lock alone.
var custom = new VmaLockOrMmapLock();
using (var mm = new AddressSpace(machine, custom))
{
    CounterSnapshot before = machine.Snapshot();
    bool same = machine.Run(0, cpu =>
    {
        ulong a = mm.Map(cpu, 2 * 4096, Protection.ReadWrite);
        mm.Write(cpu, a, 1UL);
        mm.Write(cpu, a + 4096, 2UL);
        bool ok = mm.Read<ulong>(cpu, a) == 1 && mm.Read<ulong>(cpu, a + 4096) == 2;
        mm.Unmap(cpu, a, 2 * 4096);
        return ok;
    });
    CounterSnapshot d = machine.Snapshot().Minus(before);
    Console.WriteLine($"custom strategy {custom.Name}: faults {d[CpuCounter.Faults]}, {string.Join(", ", custom.Outcomes.Select(o => $"{o.Name} {o.Read(d)}"))}");
    if (!same)
    {
        return 1;
    }
}

Console.WriteLine("sample OK");
return 0;
