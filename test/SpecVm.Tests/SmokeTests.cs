using SpecVm.Sync;

namespace SpecVm.Tests;

public class SmokeTests
{
    [Fact]
    public void CacheLineIsTwoAdjacent64ByteLines() => Assert.Equal(128, CacheLine.Size);
}
