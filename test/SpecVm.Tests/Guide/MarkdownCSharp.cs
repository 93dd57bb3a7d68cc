using System.Reflection;
using System.Runtime.Loader;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using SpecVm.Smp;

namespace SpecVm.Tests.Guide;

/// <summary>
/// Compiles the C# blocks of a Markdown file exactly as a reader would paste them: each block of top-level statements
/// is the Program.cs of a <c>dotnet new console</c> project referencing SpecVm (the SDK's implicit usings on, nullable
/// on), and each block of type declarations is a file beside every program. Nothing is added to a block, so a missing
/// <c>using</c> fails here.
/// </summary>
internal static partial class MarkdownCSharp
{
    /// <summary>The implicit usings that Microsoft.NET.Sdk adds to a console project (ImplicitUsings=enable).</summary>
    private const string ImplicitUsings = """
        global using global::System;
        global using global::System.Collections.Generic;
        global using global::System.IO;
        global using global::System.Linq;
        global using global::System.Net.Http;
        global using global::System.Threading;
        global using global::System.Threading.Tasks;
        """;

    private static readonly Lazy<MetadataReference[]> References = new(() =>
    {
        // A console app's references: the shared framework (the folder that holds System.Private.CoreLib) and SpecVm.
        string runtime = Path.GetDirectoryName(typeof(object).Assembly.Location)!;
        return Directory.GetFiles(runtime, "*.dll")
            .Where(IsManagedAssembly)
            .Append(typeof(Machine).Assembly.Location)
            .Select(path => (MetadataReference)MetadataReference.CreateFromFile(path))
            .ToArray();
    });

    /// <summary>The C# blocks of a Markdown file, in order.</summary>
    /// <param name="markdownPath">The file to read.</param>
    public static IReadOnlyList<string> Blocks(string markdownPath) =>
        CSharpBlock().Matches(File.ReadAllText(markdownPath).ReplaceLineEndings("\n")).Select(m => m.Groups[1].Value).ToList();

    /// <summary>Compiles every program block with every type block; returns one compiled program per program block.</summary>
    /// <param name="blocks">The blocks of one Markdown file.</param>
    /// <param name="extraAssemblies">Paths of assemblies the blocks use besides the framework and SpecVm.</param>
    public static IReadOnlyList<CompiledProgram> Compile(IReadOnlyList<string> blocks, params string[] extraAssemblies)
    {
        MetadataReference[] references = [.. References.Value, .. extraAssemblies.Select(p => MetadataReference.CreateFromFile(p))];
        CSharpParseOptions parse = CSharpParseOptions.Default.WithLanguageVersion(LanguageVersion.Latest);
        var trees = blocks.Select((code, i) => CSharpSyntaxTree.ParseText(code, parse, path: $"block{i + 1}.cs")).ToList();
        var programs = trees.Where(IsProgram).ToList();
        var files = trees.Where(t => !IsProgram(t)).Append(CSharpSyntaxTree.ParseText(ImplicitUsings, parse, path: "GlobalUsings.g.cs")).ToList();
        var options = new CSharpCompilationOptions(OutputKind.ConsoleApplication)
            .WithNullableContextOptions(NullableContextOptions.Enable)
            .WithOptimizationLevel(OptimizationLevel.Debug);

        var compiled = new List<CompiledProgram>();
        if (programs.Count == 0)
        {
            // Only type blocks: they must still compile, as a library.
            programs.Add(CSharpSyntaxTree.ParseText(string.Empty, parse, path: "(none).cs"));
            options = options.WithOutputKind(OutputKind.DynamicallyLinkedLibrary);
        }

        foreach (SyntaxTree program in programs)
        {
            string name = "GuideBlock" + compiled.Count;
            CSharpCompilation compilation = CSharpCompilation.Create(name, files.Prepend(program), references, options);
            using var image = new MemoryStream();
            var result = compilation.Emit(image);
            var problems = result.Diagnostics
                .Where(d => d.Severity >= DiagnosticSeverity.Warning)
                .Select(d => $"{d.Id} {d.GetMessage()} at {d.Location.GetLineSpan()}")
                .ToList();
            compiled.Add(new CompiledProgram(program.ToString(), problems, result.Success ? image.ToArray() : null));
        }

        return compiled;
    }

    private static bool IsProgram(SyntaxTree tree) =>
        tree.GetCompilationUnitRoot().Members.OfType<GlobalStatementSyntax>().Any();

    private static bool IsManagedAssembly(string path)
    {
        try
        {
            AssemblyName.GetAssemblyName(path);
            return true;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }

    [GeneratedRegex(@"```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    /// <summary>One program block, compiled with the type blocks.</summary>
    /// <param name="Code">The program block as written.</param>
    /// <param name="Problems">Compiler errors and warnings (a block shown to readers should have neither).</param>
    /// <param name="Image">The assembly, or null if it did not compile.</param>
    internal sealed record CompiledProgram(string Code, IReadOnlyList<string> Problems, byte[]? Image)
    {
        /// <summary>Runs the program's entry point in a collectible load context and returns what it printed.</summary>
        public string Run()
        {
            Assert.NotNull(Image);
            var context = new AssemblyLoadContext("guide-block", isCollectible: true);
            TextWriter original = Console.Out;
            var printed = new StringWriter();
            try
            {
                Assembly assembly = context.LoadFromStream(new MemoryStream(Image));
                MethodInfo main = assembly.EntryPoint!;

                // Console is process-wide: other tests running at the same time may add lines, never remove ours.
                Console.SetOut(TextWriter.Synchronized(printed));
                main.Invoke(null, main.GetParameters().Length == 0 ? null : [Array.Empty<string>()]);
            }
            finally
            {
                Console.SetOut(original);
                context.Unload();
            }

            return printed.ToString();
        }
    }
}
