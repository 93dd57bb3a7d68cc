using SpecVm.Memory;
using SpecVm.Smp;

namespace SpecVm.Tests.Memory;

/// <summary>
/// Frame accounting for a test: taken when the machine is fresh, checked at the end. Every frame is free or in one of
/// the in-use states (the machine's zero page counted once); none awaits a flush or is half-prepared; the allocator's free count and the frame states agree;
/// and the free count is back where it started once everything is unmapped and the address space disposed.
/// </summary>
internal sealed class FrameLedger
{
    private readonly Machine _machine;
    private readonly long _initialFree;

    private FrameLedger(Machine machine, long initialFree)
    {
        _machine = machine;
        _initialFree = initialFree;
    }

    /// <summary>The free count of a machine before the test uses it.</summary>
    public long InitialFree => _initialFree;

    /// <summary>Records the machine's free frames now (before any address space exists).</summary>
    public static FrameLedger Begin(Machine machine)
    {
        ArgumentNullException.ThrowIfNull(machine);
        FrameCensus census = machine.Memory.Census();
        Assert.Equal(machine.Frames.FreeFrames, census.Free);
        return new FrameLedger(machine, census.Free);
    }

    /// <summary>Asserts the books balance; call after the address spaces are disposed (waits for SRCU callbacks first).</summary>
    public void AssertBalanced()
    {
        _machine.Srcu.Barrier();
        FrameCensus census = _machine.Memory.Census();
        string books = $"census: {census}; allocator free {_machine.Frames.FreeFrames}; initially free {_initialFree}";
        long inUse = census.Anonymous + census.PageTables + census.PageCache + census.AwaitingFlush + census.Preparing + census.ZeroPage;
        Assert.True(census.Total == _machine.Memory.FrameCount, $"Census total is not the frame count ({_machine.Memory.FrameCount}): {books}");
        Assert.True(census.Free + inUse == census.Total, $"Free + in use != total: {books}");
        Assert.True(census.AwaitingFlush == 0, $"Frames left awaiting a flush: {books}");
        Assert.True(census.Preparing == 0, $"Frames left half-prepared: {books}");
        Assert.True(census.ZeroPage == 1, $"The machine's one zero page is missing or duplicated: {books}");
        Assert.True(_machine.Memory.Frame(_machine.ZeroPfn).ReadState() == FrameState.ZeroPage, $"The zero page frame {_machine.ZeroPfn} left its state: {books}");
        Assert.True(census.Free == _machine.Frames.FreeFrames, $"Frame states and the allocator disagree: {books}");
        Assert.True(census.Free == _initialFree, $"Frames leaked or double-freed: {books}");
    }
}
