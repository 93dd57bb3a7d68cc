using System.Text;
using SpecVm.Faults;
using SpecVm.Mm;
using SpecVm.Smp;

namespace SpecVm.Tests.Reliability;

/// <summary>
/// Runs one adversarial sequence on a fresh machine and checks, after every step, "clear error, nothing changed, no
/// hang, no crash": the step succeeds, or throws one of the documented types and leaves the model's fingerprint (VMA
/// list, frame census, lock and SRCU state, invariant-checker result) exactly as it was; every step is bounded.
/// </summary>
internal sealed class AdversarialHarness : IDisposable
{
    /// <summary>A step that takes longer than this counts as a hang (by default).</summary>
    public static readonly TimeSpan DefaultStepBound = TimeSpan.FromSeconds(10);

    private const int Cpus = 2;
    private const long FilePages = 16;

    private readonly Machine _machine;
    private readonly Machine _foreign;
    private readonly AddressSpace _mm;
    private readonly SimFile _file;
    private readonly long _freeAtStart;
    private bool _mmDisposed;
    private bool _fileDisposed;
    private bool _machineDisposed;
    private Task? _hungStep;

    public AdversarialHarness(Machine foreign, int strategy, TimeSpan? stepBound = null)
    {
        _foreign = foreign;
        StepBound = stepBound ?? DefaultStepBound;
        _machine = new Machine(new MachineOptions
        {
            CpuCount = Cpus,
            MemoryBytes = 8L << 20,
            Pin = false, // Many short-lived machines on a shared 2-core host: pinning buys nothing here.
            WatchdogTimeout = TimeSpan.FromSeconds(3),
        });
        _freeAtStart = _machine.Memory.Census().Free;
        _mm = new AddressSpace(_machine, TestStrategy(strategy));
        _file = new SimFile(_machine, FilePages * 4096);
    }

    /// <summary>A step that takes longer than this counts as a hang.</summary>
    public TimeSpan StepBound { get; }

    /// <summary>Steps that ended with a documented exception (the model unchanged).</summary>
    public int Refused { get; private set; }

    /// <summary>Steps that succeeded.</summary>
    public int Succeeded { get; private set; }

    /// <summary>Runs every step, then checks the invariants; throws (an xunit failure) on the first broken property.</summary>
    public void Run(IReadOnlyList<AdversarialOp> ops)
    {
        for (int i = 0; i < ops.Count; i++)
        {
            Step(i, ops[i]);
        }

        if (!_machineDisposed && !_mmDisposed)
        {
            IReadOnlyList<string> violations = InvariantChecker.FindViolations(_mm, _fileDisposed && _file.Mappings == 0 ? [] : [_file]);
            Assert.True(violations.Count == 0, "Invariant violations at the end:\n  " + string.Join("\n  ", violations));
        }

        if (!_machineDisposed)
        {
            Assert.True(_machine.Violations.Count == 0, "Machine violations: " + string.Join("; ", _machine.Violations));
        }
    }

    /// <summary>Tears down what is left (address space, then file, then machine) and checks every frame came back.</summary>
    public void Dispose()
    {
        if (_hungStep != null && !_hungStep.Wait(StepBound * 5))
        {
            return; // A CPU is stuck for good: the machine cannot be stopped; the test has failed already.
        }

        if (!_machineDisposed)
        {
            _mm.Dispose();
            _file.Dispose();
            _machine.Srcu.Barrier();
            long free = _machine.Memory.Census().Free;
            _machine.Dispose();
            Assert.True(free == _freeAtStart, $"Frames leaked: {_freeAtStart - free} of {_freeAtStart} not free after teardown.");
        }
    }

    /// <summary>The catalog's correct strategies by index (0 is mmap-lock, 1 speculative, 2 per-vma-lock, then the rest in catalog order).</summary>
    private static FaultStrategy TestStrategy(int strategy) =>
        StrategyCatalog.Create(StrategyCatalog.CorrectNames[strategy % StrategyCatalog.CorrectNames.Count]);

    /// <summary>Where each step is appended before it runs when <c>SPECVM_ADVERSARIAL_TRACE</c> names a file: a step that
    /// crashes the process (no exception to catch) is then the trace's last line.</summary>
    private static readonly string? TracePath = Environment.GetEnvironmentVariable("SPECVM_ADVERSARIAL_TRACE");

    private void Step(int index, AdversarialOp op)
    {
        if (TracePath != null)
        {
            File.AppendAllText(TracePath, $"{(index == 0 ? "--- sequence\n" : "")}{index} {op}\n");
        }

        string before = Fingerprint();
        Exception? error = Execute(op, out Task? hung);
        if (hung != null)
        {
            _hungStep = hung;
            Assert.Fail($"Step {index} {op} hung (no result within {StepBound.TotalSeconds} s).");
        }

        bool misuseOnly = IsMisuseOnly(op.Kind);
        if (error == null)
        {
            Assert.False(misuseOnly, $"Step {index} {op}: the misuse was accepted silently (no exception).");
            Succeeded++;
            if (!_mmDisposed && op.Kind is not (AdversarialOpKind.DisposeAddressSpace or AdversarialOpKind.DisposeFile or AdversarialOpKind.DisposeMachine))
            {
                // A step that succeeds must leave the model sound too: this names the step that broke it.
                IReadOnlyList<string> violations = InvariantChecker.FindViolations(_mm, _fileDisposed && _file.Mappings == 0 ? [] : [_file]);
                Assert.True(violations.Count == 0, $"Step {index} {op} succeeded but broke an invariant:\n  " + string.Join("\n  ", violations));
            }

            switch (op.Kind)
            {
                case AdversarialOpKind.DisposeAddressSpace: _mmDisposed = true; break;
                case AdversarialOpKind.DisposeFile: _fileDisposed = true; break;
                case AdversarialOpKind.DisposeMachine: _machineDisposed = true; break;
            }

            return;
        }

        Assert.True(IsDocumented(error, op.Kind), $"Step {index} {op} threw an undocumented {error.GetType().Name}: {error}");
        string after = Fingerprint();
        Assert.True(before == after, $"Step {index} {op} threw {error.GetType().Name} ({error.Message}) but changed the model:\nbefore: {before}\nafter:  {after}");
        Refused++;
    }

    private static bool IsMisuseOnly(AdversarialOpKind kind) => kind is AdversarialOpKind.SrcuDoubleUnlock or AdversarialOpKind.SrcuUnlockWrongIndex
        or AdversarialOpKind.SrcuSynchronizeInsideSection or AdversarialOpKind.SrcuThrowingCallback or AdversarialOpKind.SrcuBadCpu
        or AdversarialOpKind.RwsemExtraExit or AdversarialOpKind.RwsemWriteWithIrqsOffWhileReadHeld or AdversarialOpKind.ForeignCpu
        or AdversarialOpKind.FromNonCpuThread or AdversarialOpKind.PlantAcceptedMisuse;

    /// <summary>The documented refusals: the ArgumentException family, InvalidOperationException (ObjectDisposedException
    /// included), SynchronizationLockException from the mmap lock, and Barrier's AggregateException of callback failures.</summary>
    private static bool IsDocumented(Exception e, AdversarialOpKind kind) => e switch
    {
        ArgumentException or InvalidOperationException or SynchronizationLockException => true,
        AggregateException a when kind == AdversarialOpKind.SrcuThrowingCallback => a.InnerExceptions.All(x => x is AdversarialCallbackException),
        _ => false,
    };

    private Exception? Execute(AdversarialOp op, out Task? hung)
    {
        hung = null;
        Task task;
        try
        {
            task = op.Kind switch
            {
                AdversarialOpKind.FromNonCpuThread => Task.Run(() => Apply(op with { Kind = op.Inner }, _machine.Cpu(op.Cpu))),
                AdversarialOpKind.ForeignCpu => _foreign.RunAsync(0, cpu => Apply(op with { Kind = op.Inner }, cpu)),
                AdversarialOpKind.DisposeMachine => Task.Run(_machine.Dispose),
                AdversarialOpKind.DisposeAddressSpace => Task.Run(_mm.Dispose),
                AdversarialOpKind.DisposeFile => Task.Run(_file.Dispose),
                _ => _machine.RunAsync(op.Cpu, cpu => Apply(op, cpu)),
            };
        }
        catch (Exception e)
        {
            return e; // Refused before any work was queued (a disposed machine).
        }

        try
        {
            if (!task.Wait(StepBound))
            {
                hung = task;
                return null;
            }

            return null;
        }
        catch (AggregateException e)
        {
            Exception inner = e.InnerException!;
            return inner is CpuException cpu ? cpu.InnerException! : inner;
        }
    }

    private void Apply(AdversarialOp op, Cpu cpu)
    {
        switch (op.Kind)
        {
            case AdversarialOpKind.Map:
            case AdversarialOpKind.MapHuge:
                _mm.Map(cpu, op.Length, (Protection)op.Protection, fixedAddress: Fixed(op.Address));
                break;
            case AdversarialOpKind.MapFile:
            case AdversarialOpKind.MapFileOffsetEdge:
                _mm.Map(cpu, op.Length, (Protection)op.Protection, (MappingKind)op.MappingKind, op.MappingKind == 0 ? null : _file, op.FileOffset, Fixed(op.Address));
                break;
            case AdversarialOpKind.Unmap:
                _mm.Unmap(cpu, Resolve(op.Address), op.Length);
                break;
            case AdversarialOpKind.Protect:
                _mm.Protect(cpu, Resolve(op.Address), op.Length, (Protection)op.Protection);
                break;
            case AdversarialOpKind.DontNeed:
                _mm.DontNeed(cpu, Resolve(op.Address), op.Length);
                break;
            case AdversarialOpKind.Read:
                _mm.TryRead(cpu, Resolve(op.Address) & ~7UL, out long _);
                break;
            case AdversarialOpKind.Write:
                _mm.TryWrite(cpu, Resolve(op.Address) & ~7UL, (long)op.Length);
                break;
            case AdversarialOpKind.WithIrqsDisabled:
                cpu.LocalIrqDisable();
                try
                {
                    Apply(op with { Kind = op.Inner }, cpu);
                }
                finally
                {
                    cpu.LocalIrqEnable();
                }

                break;
            case AdversarialOpKind.AccessWithIrqsDisabled:
                cpu.LocalIrqDisable();
                try
                {
                    Apply(op with { Kind = op.Protection % 2 == 0 ? AdversarialOpKind.Read : AdversarialOpKind.Write }, cpu);
                }
                finally
                {
                    cpu.LocalIrqEnable();
                }

                break;
            case AdversarialOpKind.SrcuDoubleUnlock:
            {
                int idx = _machine.Srcu.ReadLock(cpu.Id);
                _machine.Srcu.ReadUnlockLocal(cpu.Id, idx);
                _machine.Srcu.ReadUnlockLocal(cpu.Id, idx);
                break;
            }

            case AdversarialOpKind.SrcuUnlockWrongIndex:
            {
                int idx = _machine.Srcu.ReadLock(cpu.Id);
                try
                {
                    _machine.Srcu.ReadUnlock(cpu.Id, idx ^ 1);
                }
                finally
                {
                    _machine.Srcu.ReadUnlockLocal(cpu.Id, idx);
                }

                break;
            }

            case AdversarialOpKind.SrcuSynchronizeInsideSection:
            {
                int idx = _machine.Srcu.ReadLock(cpu.Id);
                try
                {
                    _machine.Srcu.Synchronize(cpu);
                }
                finally
                {
                    _machine.Srcu.ReadUnlockLocal(cpu.Id, idx);
                }

                break;
            }

            case AdversarialOpKind.SrcuThrowingCallback:
                _machine.Srcu.Defer(static _ => throw new AdversarialCallbackException(), null);
                _machine.Srcu.Barrier();
                break;
            case AdversarialOpKind.SrcuBadCpu:
                _machine.Srcu.ReadLock(op.Protection % 2 == 0 ? -1 : Cpus);
                break;
            case AdversarialOpKind.RwsemExtraExit:
                if (op.Protection % 2 == 0)
                {
                    _mm.MmapLock.ReadUnlock();
                }
                else
                {
                    _mm.MmapLock.WriteUnlock();
                }

                break;
            case AdversarialOpKind.RwsemWriteWithIrqsOffWhileReadHeld:
                _mm.MmapLock.ReadLock(cpu);
                cpu.LocalIrqDisable();
                try
                {
                    _mm.MmapLock.WriteLock(cpu);
                    _mm.MmapLock.WriteUnlock(); // Not reached: the lock is read-held, so the writer must wait, and may not sleep.
                }
                finally
                {
                    cpu.LocalIrqEnable();
                    _mm.MmapLock.ReadUnlock();
                }

                break;
            case AdversarialOpKind.PlantMapThenThrow:
                _mm.Map(cpu, 4096, Protection.Read);
                throw new ArgumentException("planted: refused after the change", nameof(op));
            case AdversarialOpKind.PlantHang:
                Thread.Sleep(StepBound * 3);
                break;
            case AdversarialOpKind.PlantUndocumentedException:
                throw new NullReferenceException("planted");
            case AdversarialOpKind.PlantAcceptedMisuse:
                break; // A misuse-only kind that returns normally, as a missing argument check would.
            default:
                throw new InvalidOperationException($"Harness bug: {op.Kind} cannot be applied directly.");
        }
    }

    private ulong? Fixed(Where where) => !where.InVma && where.Value == 0 ? null : Resolve(where);

    private ulong Resolve(Where where)
    {
        if (!where.InVma)
        {
            return where.Value;
        }

        IReadOnlyList<VmaInfo> vmas = _mmDisposed ? [] : _mm.Vmas.Snapshot();
        return vmas.Count == 0 ? AddressSpace.MmapBase + where.Value : vmas[where.VmaIndex % vmas.Count].Start + where.Value;
    }

    /// <summary>Everything a refused step must leave as it was. Taken only while no CPU runs anything.</summary>
    private string Fingerprint()
    {
        if (_machineDisposed)
        {
            return "machine disposed";
        }

        var sb = new StringBuilder();
        if (_mmDisposed)
        {
            sb.Append("mm disposed; ");
        }
        else
        {
            foreach (VmaInfo v in _mm.Vmas.Snapshot())
            {
                sb.Append(v).Append("; ");
            }

            sb.Append($"mmap lock: readers {_mm.MmapLock.ReaderCount}, write-locked {_mm.MmapLock.IsWriteLocked}, waiting writers {_mm.MmapLock.WaitingWriters}; ");
            IReadOnlyList<string> violations = InvariantChecker.FindViolations(_mm, _fileDisposed && _file.Mappings == 0 ? [] : [_file]);
            sb.Append($"violations {violations.Count} {string.Join(" | ", violations.Take(3))}; ");
        }

        sb.Append($"file disposed {_fileDisposed}, cached {(_fileDisposed ? 0 : _file.CachedPages)}; ");
        sb.Append("frames: ").Append(_machine.Memory.Census()).Append("; ");
        for (int cpu = 0; cpu < Cpus; cpu++)
        {
            sb.Append($"cpu {cpu}: irqs off {_machine.Cpu(cpu).IrqsDisabled}, srcu sections {_machine.Srcu.OpenSections(cpu)}; ");
        }

        sb.Append($"machine violations {_machine.Violations.Count}");
        return sb.ToString();
    }
}

/// <summary>What the adversarial suite's throwing SRCU callback throws, so that its report can be told from anything else.</summary>
internal sealed class AdversarialCallbackException : Exception
{
    public AdversarialCallbackException()
        : base("An SRCU callback failed on purpose (adversarial suite).")
    {
    }
}
