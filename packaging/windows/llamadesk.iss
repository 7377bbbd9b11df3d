; Inno Setup script: LlamaDesk for Windows, installed per user (no administrator rights needed).
;
; Build the bundle first (`make package` runs PyInstaller, then this script when ISCC is on PATH):
;   set LLAMADESK_BACKEND=cuda      (an NVIDIA CUDA toolkit must be installed; tools/dev.py compiles
;                                    llama.cpp with -DGGML_CUDA=on -DGGML_RPC=on)
;   python tools\dev.py package
; or by hand:
;   iscc /DAppVersion=0.1.0 /DBundleDir=dist\LlamaDesk /DOutputDir=dist packaging\windows\llamadesk.iss
;
; A CUDA build's ggml-cuda.dll needs the CUDA runtime (cudart64_12.dll, cublas64_12.dll,
; cublasLt64_12.dll). PyInstaller collects them from the toolkit's bin folder when that folder is on
; PATH at build time, so the installed app runs on machines with only the NVIDIA driver.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef BundleDir
  #define BundleDir "..\..\dist\LlamaDesk"
#endif
#ifndef OutputDir
  #define OutputDir "..\..\dist"
#endif

[Setup]
AppId={{6C1E3F0A-6E2B-4D55-9C39-2F4E1C0B7A51}
AppName=LlamaDesk
AppVersion={#AppVersion}
AppVerName=LlamaDesk {#AppVersion}
AppPublisher=LlamaDesk contributors
DefaultDirName={autopf}\LlamaDesk
DefaultGroupName=LlamaDesk
DisableProgramGroupPage=yes
; Per user: {autopf} becomes %LOCALAPPDATA%\Programs and shortcuts go to the user's Start menu.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=LlamaDesk-{#AppVersion}-windows-setup
SetupIconFile=..\..\resources\icons\llamadesk.ico
UninstallDisplayIcon={app}\LlamaDesk.exe
UninstallDisplayName=LlamaDesk
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\LlamaDesk"; Filename: "{app}\LlamaDesk.exe"; WorkingDir: "{app}"
Name: "{autoprograms}\Uninstall LlamaDesk"; Filename: "{uninstallexe}"
Name: "{autodesktop}\LlamaDesk"; Filename: "{app}\LlamaDesk.exe"; WorkingDir: "{app}"; Tasks: desktopicon

[Run]
Filename: "{app}\LlamaDesk.exe"; Description: "{cm:LaunchProgram,LlamaDesk}"; Flags: nowait postinstall skipifsilent

; Chats, settings, models and logs live in the user's LlamaDesk data folders and are kept on uninstall.
[UninstallDelete]
Type: filesandordirs; Name: "{app}\_internal"
