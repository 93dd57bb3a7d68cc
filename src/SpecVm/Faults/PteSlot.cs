using System.Diagnostics;
using System.Runtime.CompilerServices;
using SpecVm.Memory;
using SpecVm.Paging;
using SpecVm.Smp;

namespace SpecVm.Faults;

/// <summary>
/// A page-table entry found by a lockless walk (<see cref="FaultCore.WalkLockless"/>) together with the page-table page
/// that holds it, whose split page-table lock (PTL) guards the entry: Linux's <c>vmf-&gt;pte</c> and <c>vmf-&gt;ptl</c>.
/// </summary>
/// <remarks>
/// <para>
/// A slot stays valid only while the table cannot be freed under its holder: with interrupts disabled on the walking
/// CPU since the walk (page-table pages are freed only after a TLB shootdown that every CPU of the address space
/// acknowledged, and a CPU with interrupts off does not acknowledge: the reason the 2017 speculative fault and
/// <c>gup_fast</c> walk that way), or while the VMA covering the entry is read-locked or the mmap lock is held. It is a
/// <see langword="ref"/> struct so that it cannot outlive the method that walked.
/// </para>
/// <para>
/// Read the entry with <see cref="Read"/> and test the value with <see cref="IsPresent"/> and <see cref="Permits"/>;
/// change it only with <see cref="FaultCore.Install(Cpu, Mm.AddressSpace, ref PreparedPage, PteSlot, ulong)"/> under the
/// PTL (<see cref="TryLock"/> or <see cref="Lock"/>, then <see cref="Unlock"/>). With interrupts off, take the PTL with
/// <see cref="TryLock"/> and give up when it fails: an unmapper may hold that PTL while it waits for this CPU to
/// acknowledge a shootdown, which it cannot do with interrupts off (<see cref="SpeculativeStrategy.SpinOnPtl"/> shows the
/// deadlock a spin causes).
/// </para>
/// </remarks>
public readonly unsafe ref struct PteSlot
{
    private readonly ulong* _entry;
    private readonly PageFrame* _table;
    private readonly long _tablePfn;
    private readonly bool _huge;

    internal PteSlot(ulong* entry, ref PageFrame table, long tablePfn)
    {
        _entry = entry;
        _table = (PageFrame*)Unsafe.AsPointer(ref table);
        _tablePfn = tablePfn;
    }

    private PteSlot(bool huge)
    {
        _huge = huge;
        _tablePfn = -1;
    }

    /// <summary>The slot of a walk that stopped at a PMD mapping a huge page.</summary>
    internal static PteSlot HugePmd => new(huge: true);

    /// <summary>
    /// False when the walk found a page-table level missing: nothing is mapped there, and a lockless walker may not
    /// allocate tables (the 2017 series aborts to the mmap lock); or found the PMD mapping a 2 MiB page
    /// (<see cref="IsHuge"/>). Every other member requires a slot that has one.
    /// </summary>
    public bool HasTable
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _entry != null;
    }

    /// <summary>
    /// True when the walk stopped at a PMD that maps a 2 MiB transparent huge page (<c>pmd_trans_huge</c>): there is no
    /// PTE table (<see cref="HasTable"/> is false), and the published speculative paths leave such a fault to the classic
    /// path, which handles huge pages (<see cref="FaultCore.HandleStable"/>).
    /// </summary>
    public bool IsHuge => _huge;

    /// <summary>The PFN of the page-table page holding the entry (for diagnostics), or -1 without one.</summary>
    internal long TablePfn => _entry != null ? _tablePfn : -1;

    /// <summary>True if a PTE value maps a page (its present bit), whatever its permissions.</summary>
    /// <param name="pte">A value returned by <see cref="Read"/>.</param>
    /// <returns>True if present.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsPresent(ulong pte) => (pte & Pte.Present) != 0;

    /// <summary>
    /// True if a PTE value lets user code make the access: present and user-accessible, and writable for a write. A
    /// present PTE that does not permit it is a write-protect fault (copy-on-write, the zero page, write-notify) or a
    /// protection change, which <see cref="FaultCore.HandleStable"/> resolves under a lock.
    /// </summary>
    /// <param name="pte">A value returned by <see cref="Read"/>.</param>
    /// <param name="write">True for a write.</param>
    /// <returns>True if the access would not fault.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Permits(ulong pte, bool write)
    {
        ulong need = write ? Pte.Present | Pte.User | Pte.Writable : Pte.Present | Pte.User;
        return (pte & need) == need;
    }

    /// <summary>Reads the entry (Linux <c>READ_ONCE(*vmf-&gt;pte)</c>), with acquire semantics.</summary>
    /// <returns>The raw PTE value, for <see cref="IsPresent"/>, <see cref="Permits"/> and as the value
    /// <see cref="FaultCore.Install(Cpu, Mm.AddressSpace, ref PreparedPage, PteSlot, ulong)"/> expects.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ulong Read()
    {
        // Acquire: the frame state of whatever the entry maps, published before the PTE by its installer, is visible.
        return Volatile.Read(ref *_entry);
    }

    /// <summary>
    /// Takes the PTL if it is free (Linux <c>spin_trylock(ptl)</c>): one CAS, a full fence after which a recheck of what
    /// was read locklessly (<see cref="Mm.Vma.ReadRetryAfterFence"/>) cannot be satisfied early.
    /// </summary>
    /// <param name="cpu">The CPU taking it, on its own thread.</param>
    /// <returns>True if taken; then call <see cref="Unlock"/>.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryLock(Cpu cpu)
    {
        CheckTableStillAllocated(cpu);
        return _table->Ptl.TryLock(cpu.Id);
    }

    /// <summary>
    /// Takes the PTL, spinning until it is free (Linux <c>spin_lock(ptl)</c>); the spin serves IPIs only when
    /// interrupts are enabled, and with them disabled it can deadlock against an unmapper waiting for this CPU (the
    /// hard-lockup watchdog then throws <see cref="HardLockupException"/>). Spins are recorded in the CPU's PTL wait
    /// histogram.
    /// </summary>
    /// <param name="cpu">The CPU taking it, on its own thread.</param>
    public void Lock(Cpu cpu)
    {
        CheckTableStillAllocated(cpu);
        cpu.SetSpinTarget(cpu.IrqsDisabled ? "PTL (interrupts disabled) of PTE table" : "PTL of PTE table", _tablePfn);
        cpu.LockPtl(ref _table->Ptl);
    }

    /// <summary>Releases the PTL (Linux <c>spin_unlock(ptl)</c>): a release store, so the installed PTE is visible first.</summary>
    /// <param name="cpu">The CPU that took it.</param>
    /// <exception cref="SynchronizationLockException">The CPU does not hold this PTL.</exception>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Unlock(Cpu cpu) => _table->Ptl.Unlock(cpu.Id);

    /// <summary>The raw entry, for the library's own install path.</summary>
    internal ulong* Entry => _entry;

    /// <summary>Debug check: the PTE table a walker reached must still be a page table when it locks it.</summary>
    [Conditional("DEBUG")]
    private void CheckTableStillAllocated(Cpu cpu)
    {
        if (_table->ReadState() != FrameState.PageTable)
        {
            cpu.Machine.ReportViolation($"CPU {cpu.Id}: lockless walker reached page-table page {_tablePfn}, which was freed under it");
        }
    }
}
