"""The public example data sets: files with their SHA-256, upstream download address and licence.

Every file is a byte-identical copy of an upstream file, except the UHCS label masks and the
UHCS ``metadata.csv`` (converted or assembled from upstream data, so they have no upstream
address: they are found only in a local ``METALLO_DATA`` folder). ``None`` as the address
also marks the two ``correlative_ebsd_bse_more`` files whose upstream names could not be
verified. Nothing here is copied into the repository: several licences (GPL, none) are not
compatible with metallo's BSD-3-Clause.
"""

from __future__ import annotations

#: data set -> (title, citation, upstream). Citations are plain text (authors, title, year, DOI
#: where one exists); upstream names the repository and commit the files were taken from.
DATASETS: dict[str, tuple[str, str, str]] = {
    "correlative_defdap_ni_ebsd_dic": (
        "EBSD map (Oxford .cpr/.crc) and HR-DIC displacement map of the same region, Ni superalloy",
        "DefDAP (deformation data analysis in Python, MechMicroMan group, University of "
        "Manchester), test data in tests/data. Apache-2.0.",
        "MechMicroMan/DefDAP @ 4e6d9d6a34659b6df71f634890390d487210c3c9, tests/data/",
    ),
    "correlative_ebsd_bse_coni": (
        "EBSD-derived image and BSE image of one CoNi superalloy section with 48 homologous points",
        "J. Lamb, EBSD-Correction (EBSD distortion correction by control-point registration), "
        "folder Slice381_CoNi16, 2022. MIT.",
        "lambjames18/EBSD-Correction @ 85191d0180414fbeea5d2420161335953b59a00e, Slice381_CoNi16/",
    ),
    "correlative_ebsd_bse_more": (
        "EBSD-derived image and resized BSE image (RGBA) of an unnamed material with 18 homologous points",
        "J. Lamb, EBSD-Correction, folder Slice8_TFS, 2023. MIT.",
        "lambjames18/EBSD-Correction @ 3762ea4b5e8562735620ea9f7bc41491c9216e76, Slice8_TFS/",
    ),
    "ebsd_ang": (
        "TSL/EDAX .ang maps: super duplex steel (2 phases), Ni (rows out of order), bcc Fe "
        "(inconsistent header), Pd (TEM ACOM)",
        "sdss_ferrite_austenite: orix-data, acquired by J. Hjelen (NTNU), CC BY 4.0; "
        "Out_Of_Order: EbsdLib test data (BlueQuartz Software), BSD-3-Clause; S00 and ACOM: MTEX "
        "example data (R. Hielscher et al., MTEX toolbox), GPL-2.0.",
        "pyxem/orix-data @ fd9d2fa9b771b60b63956a0001425be7c8a5f141; "
        "BlueQuartzSoftware/EbsdLib @ 742275f113c26363d4b663734a94299e80611e60; "
        "mtex-toolbox/mtex @ a2a9ee9d7f7297d557c16944e121a828ee0b67e1",
    ),
    "ebsd_ctf": (
        "Oxford .ctf maps: sparse fcc medium-entropy alloy, hcp Mg with twins, Zircaloy-4 "
        "(decimal commas), 7-phase eclogite (non-grid)",
        "MEA_60CR_1C: A. Gazder, mtexTools, MIT; twins and eclogite: MTEX example data "
        "(R. Hielscher et al.), GPL-2.0; Test_European_1: EbsdLib test data, BSD-3-Clause.",
        "AzdiarGazder/mtexTools @ fcb8f7e42a7cd3a66b3e2d047f9b4cc730e58f1b; "
        "mtex-toolbox/mtex @ a2a9ee9d7f7297d557c16944e121a828ee0b67e1; "
        "BlueQuartzSoftware/EbsdLib @ 742275f113c26363d4b663734a94299e80611e60",
    ),
    "ebsd_martensite_pag": (
        "TSL OIM grain files (per point, per grain) of a lath-martensite steel (M1700), 0.1 µm grid",
        "BYU Microstructure of Materials group, Prior-Austenite-Reconstruction, 2018. No licence: "
        "default copyright applies; use only as a local test fixture, do not redistribute.",
        "BYU-MicrostructureOfMaterials/Prior-Austenite-Reconstruction @ "
        "425a70c4b5a8811b906ac30bc4c97516e7cfc2a7",
    ),
    "ebsd_osc": (
        "EDAX .osc binary map and the same scan as .ang, copper, hexagonal grid",
        "S. Brinckmann, pythonEBSD, Examples/EBSD.osc and EBSD.ang, 2018. GPL-3.0-or-later.",
        "SteffenBrinckmann/pythonEBSD @ a6257e4596d4cc4968ee84c6b1240384af220d07, Examples/",
    ),
    "ebsd_vendor_hdf5": (
        "Vendor HDF5 EBSD files: EDAX OIM H5 map (Ni); Oxford H5OINA, Bruker h5ebsd and EMsoft "
        "pattern files (small test dummies)",
        "EdaxAngOnly: EbsdLib test data, BSD-3-Clause; the three dummies: kikuchipy test data "
        "(H. W. Ånes et al., kikuchipy), GPL-3.0-or-later.",
        "BlueQuartzSoftware/EbsdLib @ 742275f113c26363d4b663734a94299e80611e60; pyxem/kikuchipy @ "
        "fc55fa86470f1510f5598d3ba89d957dedd4c3b3 and 5ee871f9d05bf415f04e9ff6c4ccea9a9a9b7a0a",
    ),
    "uhcs_microconstituent_segmentation": (
        "UHCS SEM micrographs with 4-class microconstituent masks (0 matrix, 1 network, "
        "2 spheroidite, 3 Widmanstätten, 255 ignore) and µm/px in metadata.csv",
        "Images: M. D. Hecht, B. L. DeCost, T. Francis, E. A. Holm, Y. N. Picard, B. A. Webler, "
        "Ultrahigh Carbon Steel Micrograph DataBase (UHCSDB), NIST Materials Data Repository, "
        "hdl:11256/940 (Creative Commons). Labels: B. L. DeCost, B. Lei, T. Francis, E. A. Holm, "
        "High throughput quantitative metallography for complex microstructures using deep "
        "learning: a case study in ultrahigh carbon steel, Microscopy and Microanalysis 25 (2019) "
        "21-29, doi:10.1017/S1431927618015635; annotations hdl:11256/964 (no licence file).",
        "asdfqrt/Autophase @ 9ecd2dc8ec4e92745f4208cfb97f3985a26f28fd (images); "
        "bdecost/uhcs-segment @ 7aea6f37f5246bb2570e0300f224db7f186a5fc3 (labels, converted to PNG)",
    ),
    "uhcs_spheroidite_particle_segmentation": (
        "UHCS SEM micrographs with binary cementite-particle masks (0 ferrite, 1 particle, "
        "255 ignore) and µm/px in metadata.csv",
        "As uhcs_microconstituent_segmentation: UHCSDB images (hdl:11256/940) and DeCost et al., "
        "Microscopy and Microanalysis 25 (2019) 21-29, doi:10.1017/S1431927618015635.",
        "asdfqrt/Autophase @ 9ecd2dc8ec4e92745f4208cfb97f3985a26f28fd (images); "
        "bdecost/uhcs-segment @ 7aea6f37f5246bb2570e0300f224db7f186a5fc3 (labels, converted to PNG)",
    ),
}

#: data set -> files as (path inside the data set, SHA-256, upstream download address or None, licence)
FILES: dict[str, tuple[tuple[str, str, str | None, str], ...]] = {
    'correlative_defdap_ni_ebsd_dic': (
        ('testDataDIC.txt', '8b166279a584b05f43dfde72b557ba7ca82bb0c54f1eeef7adf39458c7213377',
         'https://raw.githubusercontent.com/MechMicroMan/DefDAP/4e6d9d6a34659b6df71f634890390d487210c3c9/tests/data/testDataDIC.txt', 'Apache-2.0'),
        ('testDataEBSD.cpr', '2187ef58de1b519fc8ca947e91df2c58eae053fe14e4c5fb79eb8e6563b9a3be',
         'https://raw.githubusercontent.com/MechMicroMan/DefDAP/4e6d9d6a34659b6df71f634890390d487210c3c9/tests/data/testDataEBSD.cpr', 'Apache-2.0'),
        ('testDataEBSD.crc', '7d7ff4e4384f6551a582c982de8dc9f59170d9f3b573773b20d91b03d0c750f4',
         'https://raw.githubusercontent.com/MechMicroMan/DefDAP/4e6d9d6a34659b6df71f634890390d487210c3c9/tests/data/testDataEBSD.crc', 'Apache-2.0'),
    ),
    'correlative_ebsd_bse_coni': (
        ('Slice381_bse.tif', '3187623528301caebc2302924d543ab04d8da1e9b2eadecd5e7ceb7dbd71e6db',
         'https://raw.githubusercontent.com/lambjames18/EBSD-Correction/85191d0180414fbeea5d2420161335953b59a00e/Slice381_CoNi16/bse.tif', 'MIT'),
        ('Slice381_ctr_pts_bse.txt', '26c0f074a2537971f7d1dce2e3f9ac4f59b03fc7f84b29f5d37d4dddd18dae10',
         'https://raw.githubusercontent.com/lambjames18/EBSD-Correction/85191d0180414fbeea5d2420161335953b59a00e/Slice381_CoNi16/ctr_pts_bse.txt', 'MIT'),
        ('Slice381_ctr_pts_ebsd.txt', '5003cad3169b52615949cf8331e590ede149aa2308d7c8d0fa2ddd602a95c356',
         'https://raw.githubusercontent.com/lambjames18/EBSD-Correction/85191d0180414fbeea5d2420161335953b59a00e/Slice381_CoNi16/ctr_pts_ebsd.txt', 'MIT'),
        ('Slice381_ebsd.tif', '939a198693b2863fd44fc68319139e4a4a58a9da3e68b8d382c6068ed766cc41',
         'https://raw.githubusercontent.com/lambjames18/EBSD-Correction/85191d0180414fbeea5d2420161335953b59a00e/Slice381_CoNi16/ebsd.tif', 'MIT'),
        ('Slice381_note.txt', '07e3dd4216827eb195aa1aa5ceed399081ec00b0ac57133b07b85e7b04fa09c8',
         'https://raw.githubusercontent.com/lambjames18/EBSD-Correction/85191d0180414fbeea5d2420161335953b59a00e/Slice381_CoNi16/note.txt', 'MIT'),
    ),
    'correlative_ebsd_bse_more': (
        ('Slice8_TFS_bse_resized.png', 'ff5aa215db9636e90edcd91dd0e7bf60743184bc7aaf72572d11f917f89a9c1d',
         None, 'MIT'),
        ('Slice8_TFS_ctr_pts_bse_resized.txt', '821bbbbe654f59833c55378e17a7e3026913390df56e61ac070f5684d7282125',
         'https://raw.githubusercontent.com/lambjames18/EBSD-Correction/3762ea4b5e8562735620ea9f7bc41491c9216e76/Slice8_TFS/ctr_pts_8_bse_resized.txt', 'MIT'),
        ('Slice8_TFS_ctr_pts_ebsd.txt', 'ee652bee225a0020bb908e52e5e11c151fdcf025b4cc9a523c92cbcbdb3fa14a',
         None, 'MIT'),
        ('Slice8_TFS_ebsd.png', 'e687ec4c6d30ccda7943e595a9c1718ce150fb4a84f48ff08daa70a35ed4a700',
         'https://raw.githubusercontent.com/lambjames18/EBSD-Correction/3762ea4b5e8562735620ea9f7bc41491c9216e76/Slice8_TFS/8_ebsd.png', 'MIT'),
    ),
    'ebsd_ang': (
        ('ebsdlib_Out_Of_Order_Ni.ang', '4d9195620cf2ba9ab6db94f62d501634d485843bf515952860cf978c95aef80b',
         'https://raw.githubusercontent.com/BlueQuartzSoftware/EbsdLib/742275f113c26363d4b663734a94299e80611e60/Data/EbsdTestFiles/Out_Of_Order.ang', 'BSD-3-Clause'),
        ('mtex_3dData_S00.ANG', '682775e71b79483e5320142358957e1d0f71b1dc7cb0bb4d7d26249aa65c7ae4',
         'https://raw.githubusercontent.com/mtex-toolbox/mtex/a2a9ee9d7f7297d557c16944e121a828ee0b67e1/data/EBSD/3dData/S00.ANG', 'GPL-2.0'),
        ('mtex_ACOM.ang', '71b2a089c44b922e354111ebe373d7898c59ea45f2ce3b6f018462cd4482f9b5',
         'https://raw.githubusercontent.com/mtex-toolbox/mtex/a2a9ee9d7f7297d557c16944e121a828ee0b67e1/data/EBSD/ACOM.ang', 'GPL-2.0'),
        ('sdss_ferrite_austenite.ang', 'ac2fc2fc2b8c9c598703c96f9888677bccc9cd88cddd5e78735653fd5504e371',
         'https://raw.githubusercontent.com/pyxem/orix-data/fd9d2fa9b771b60b63956a0001425be7c8a5f141/sdss_ferrite_austenite/sdss_ferrite_austenite.ang', 'CC-BY-4.0'),
    ),
    'ebsd_ctf': (
        ('ebsdlib_Test_European_1_decimal_comma.ctf', '2b3187e4746a4b9f7cac306496ab75d64b4f2967b98d4d239516937aff6dbfa8',
         'https://raw.githubusercontent.com/BlueQuartzSoftware/EbsdLib/742275f113c26363d4b663734a94299e80611e60/Data/EbsdTestFiles/Test_European_1.ctf', 'BSD-3-Clause'),
        ('mtexTools_MEA_60CR_1C.ctf', '956adf09c504f702e68a956813bf6d82ec75c203a4cbd221e42d3e4524c84860',
         'https://raw.githubusercontent.com/AzdiarGazder/mtexTools/fcb8f7e42a7cd3a66b3e2d047f9b4cc730e58f1b/calcModelTexture/MEA_60CR_1C.ctf', 'MIT'),
        ('mtex_eclogite_interactive.ctf', '3d72e24fd82bab014f4e67ce63fce20465f6e62d72f5e17d283774f174510248',
         'https://raw.githubusercontent.com/mtex-toolbox/mtex/a2a9ee9d7f7297d557c16944e121a828ee0b67e1/data/EBSD/eclogite.ctf', 'GPL-2.0'),
        ('mtex_twins_Mg.ctf', 'cdb0e40625331790803c9c67f6ab56a1908c1997700c13e4bf21f773427171ca',
         'https://raw.githubusercontent.com/mtex-toolbox/mtex/a2a9ee9d7f7297d557c16944e121a828ee0b67e1/data/EBSD/twins.ctf', 'GPL-2.0'),
    ),
    'ebsd_martensite_pag': (
        ('byu_M1700_martensite_cropped_gf1.txt', 'b13075a7f8ccdb976c42816cd97fa37c2a3790bdfdd3ffd9166a20b54b28a596',
         'https://raw.githubusercontent.com/BYU-MicrostructureOfMaterials/Prior-Austenite-Reconstruction/425a70c4b5a8811b906ac30bc4c97516e7cfc2a7/Arcelor_M1700_CROPPED_gf1.txt', 'none (no licence upstream)'),
        ('byu_M1700_martensite_cropped_gf2.txt', 'f3cafcb9b5a8622addac29b7b7f8263822d55aec06dd8899b84af2924ee8615c',
         'https://raw.githubusercontent.com/BYU-MicrostructureOfMaterials/Prior-Austenite-Reconstruction/425a70c4b5a8811b906ac30bc4c97516e7cfc2a7/Arcelor_M1700_CROPPED_gf2.txt', 'none (no licence upstream)'),
    ),
    'ebsd_osc': (
        ('pythonEBSD_copper_hex.ang', '444f0c0e41be6638e055fb1c5a780ba86afa1b3214ac0851c4a69675eef40c6c',
         'https://raw.githubusercontent.com/SteffenBrinckmann/pythonEBSD/a6257e4596d4cc4968ee84c6b1240384af220d07/Examples/EBSD.ang', 'GPL-3.0-or-later'),
        ('pythonEBSD_copper_hex.osc', '66a16aa3c645b26b82613364bad26775a04be35a8e3b45763b0c940d5561758d',
         'https://raw.githubusercontent.com/SteffenBrinckmann/pythonEBSD/a6257e4596d4cc4968ee84c6b1240384af220d07/Examples/EBSD.osc', 'GPL-3.0-or-later'),
    ),
    'ebsd_vendor_hdf5': (
        ('ebsdlib_EdaxAngOnly_Ni.h5', '3986e2ba856bbcdf01cc45b6403612285289e7ccaf112d9cd0e202c0605959b1',
         'https://raw.githubusercontent.com/BlueQuartzSoftware/EbsdLib/742275f113c26363d4b663734a94299e80611e60/Data/EbsdTestFiles/EdaxAngOnly.h5', 'BSD-3-Clause'),
        ('kikuchipy_bruker_dummy_3x3.h5', 'cce3afb85e9826fb9b2218b432dc542d892ee6e1d7dada77d8dcac233844a52c',
         'https://raw.githubusercontent.com/pyxem/kikuchipy/fc55fa86470f1510f5598d3ba89d957dedd4c3b3/src/kikuchipy/data/bruker_h5ebsd/patterns.h5', 'GPL-3.0-or-later'),
        ('kikuchipy_emsoft_EBSD_TEST_Ni.h5', '10b3b51dc881337c5029c34de47686494221e63acad398178d0d70b5d6f84f74',
         'https://raw.githubusercontent.com/pyxem/kikuchipy/5ee871f9d05bf415f04e9ff6c4ccea9a9a9b7a0a/src/kikuchipy/data/emsoft_ebsd/EBSD_TEST_Ni.h5', 'GPL-3.0-or-later'),
        ('kikuchipy_oxford_dummy_3x3.h5oina', 'd863b7386385919e66031752b9e703532a144e5a555bf9cccc750e76b1d0838d',
         'https://raw.githubusercontent.com/pyxem/kikuchipy/fc55fa86470f1510f5598d3ba89d957dedd4c3b3/src/kikuchipy/data/oxford_h5ebsd/patterns.h5oina', 'GPL-3.0-or-later'),
    ),
    'uhcs_microconstituent_segmentation': (
        ('images/micrograph1061.png', '1a4ef955fe30289ef9b92226f9f435924488df26473e63920c7bbe11e8ed18d1',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1176.png', '0913b1955c58ff13b2b0d5e58c49561f3a65287b95d37e8c6f639345e8995bf6',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1219.png', 'acad9b51b8b7273c2e6cd9733582919c619367efa394c751bc8a87b4805e8782',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1289.png', '42662bba78d3fd57d844bd36ffadeadcbf57abd611e6e7400cfdba2c19f477e2',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1648.png', '493ff4cf974078b0c13004aaf8ddb7ce05e1cf6895f6fff989706f2303164556',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph220.png', 'f66369728981fa127a5edb4f17a77abb44fa09304bc81e64450d7fcd15db76de',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph235.png', 'ee92c1b01afe0183995a552dab280b6af7dc8aef747852b4e0fd531e809df999',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph295.png', '707ad9f6cb905a027f6a2d770712b93604436636e4fb3fee5b40d5e6c5c4dbf2',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph333.png', '2d0f3e587c24be608a28d5a30cb7812d176bedd8d053e97d01802f4c64fd7a4b',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph357.png', '5d93dcd8b1e64e72b319de79c26f0fe122fe813e947638237333259de1a27dfa',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph360.png', '13cb4d524cac7e585595897ccb0f60817c15246fdc8c2e24de8454f864371b8f',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph495.png', '40c292ab93c097f624f8f65da9ff4a83df5b6a21ed4c0dc34a24ad646c8cd85f',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph579.png', '166f849ff99cc3f80faec4cda45e5dcb97dc82c22a36802906f1ccf8ee583229',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph6.png', '1b8b7e61b7b8caadc1f60cb4232c683d45ae744447b37997bc0c773f33d368dc',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph75.png', '6503e94ccfabd34087326fc01ddee68f4554d9d7b229ebda1b7b352a83ffd85b',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('labels/micrograph1061.png', '0c14519fdee2c2215c32ebdd238de503456341e6ebdadfb2512bc9f598722bc5',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1176.png', 'f3c6375772f7b3c4b1c7efe8597aedc104cab0170ea280ee41003eea60f1331d',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1219.png', '72d06924e2519a8782f33c9e27e456b04e871cba0f97f7d5638bc108525587ef',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1289.png', 'b4ad80f001267e0892b6cd3e313310baf7989d38e54f5785864ebea87b10374c',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1648.png', '2241ccb7dbcdb5bef228fcb52b1d83dd5e4c330a52c52005acb83fbe93557c24',
         None, 'none (no licence upstream)'),
        ('labels/micrograph220.png', '5b7c9bae94d38184a5adfb0b6c4549fa71ed6c520f3a953a57115c2f31b87b9f',
         None, 'none (no licence upstream)'),
        ('labels/micrograph235.png', '93f092a349e2d9110423a0d31d6481d8a245622dfbb3fc067db0753eb9491756',
         None, 'none (no licence upstream)'),
        ('labels/micrograph295.png', 'f8e58652e2f7201d186b93468b32c0f8a94da2b3204782851c4500d0ecb99d1f',
         None, 'none (no licence upstream)'),
        ('labels/micrograph333.png', 'e493809c07a97cab9eda68cbb4ca3d009df16be804d5f905eaf8de2f03faaf1c',
         None, 'none (no licence upstream)'),
        ('labels/micrograph357.png', 'f7905689794829349abb9f7a6dc6b4f332cd426181988863075c3836a4138a33',
         None, 'none (no licence upstream)'),
        ('labels/micrograph360.png', '4f778c0b75762729925aa87b615b7f4dfc75f8869bf0070f42021f957d4ef2a9',
         None, 'none (no licence upstream)'),
        ('labels/micrograph495.png', 'c9749311460c87bf1f308dfcb6bbadade46de31b292e8de0ff4e5d442d8081e7',
         None, 'none (no licence upstream)'),
        ('labels/micrograph579.png', 'fad14245766d10a7785cb09273c6dfa6be5467dd64da3c259b5eee3509dd46a1',
         None, 'none (no licence upstream)'),
        ('labels/micrograph6.png', 'f05d9673e9272758986fac30d62e697e885594364f157a9b42605517cbcd3ae5',
         None, 'none (no licence upstream)'),
        ('labels/micrograph75.png', '36b09011125ee6d2609141553cfb0e0d429a3a437dd50cff8910909f7952f9bf',
         None, 'none (no licence upstream)'),
        ('metadata.csv', '9b7b7c32a0b2638588678af62f3b789e124c5b3487f7f2b4f661c5eab5708ca1',
         None, 'none (no licence upstream)'),
    ),
    'uhcs_spheroidite_particle_segmentation': (
        ('images/micrograph1013.png', 'e9857ef42e090593e5fd61fcf80ccc4ba09e340537755d7c3500257dd2eb6850',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1031.png', '8eefb3836a243715e253e89824b3ccad1b82feddafd51ea4453ff76a36918e2b',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1196.png', '03ab3c46273830a880d5e76f3add3429a6a12a3b5309aae8cbc6b0e304fd3c3f',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1234.png', 'e8a0ca2289c0a3dc1bd11d09a0c01b5dcca92bf81eafbe341e69db5da64b6471',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph1265.png', 'd31830bdb36751edf1773239fe6dab70668f1524934bdd78425ba799052a41b9',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph170.png', 'f9a1d41677af087af736d52f4f292d3bc9e70cbb7c2482b518c41d2aee204940',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph185.png', '917c4a9bb3d7412db3cf9b39d83c773d02b13d6de9da44f611c62930185047ef',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph272.png', 'c54fbbbd71c104e03f54e17a1a955e81a35dcc5ef3f3a52e646e5afec3710b0d',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph493.png', '5617ba15312e41a286a660abddcc2eeba25a16acd33f9b22d1e9d7e3c94a8a3b',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph558.png', '5ff57cbf02ca526c0403de90d71de0a68f5df16598df640265695ed10c6111a4',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('images/micrograph573.png', 'a9effb109e83f06683d4a470211ce15aff23361dcb3b46a358dad4fb156586fd',
         None, 'Creative Commons (UHCSDB, NIST)'),
        ('labels/micrograph1013.png', 'cdb6b1919a719e0c22abe3ba12c33c9973657ef292f849dd73948d9fa7669620',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1031.png', '724420bd837c852cd2c6829e7e5175fe1b1f76b2aebeb7fe5622b8104b5cd141',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1196.png', '2e02bc0af07033064bcb403f4e2d849c0e2fc5a39139a30a5b329f25d5cf1fae',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1234.png', 'fe11a8d49e8886465b442029387e27789055aee2113ae2a93f1137ece3e267a3',
         None, 'none (no licence upstream)'),
        ('labels/micrograph1265.png', '66965056e50a1b1071a537c61b3e80047862d65494fc7664c5319c0636fcd997',
         None, 'none (no licence upstream)'),
        ('labels/micrograph170.png', 'ce244b455e2751cf40aba4c29b1f47148d784327c50a1dad1eeebf616aff7f68',
         None, 'none (no licence upstream)'),
        ('labels/micrograph185.png', '4dca853313cd09d10baec4cfd71147ab5e8d00d585f01dd479347f15d72dbf22',
         None, 'none (no licence upstream)'),
        ('labels/micrograph272.png', 'a5c8a3835b1a0598ef7f11a9c7fbcc0853917f4a9c13036adc45b2e8d7c778e2',
         None, 'none (no licence upstream)'),
        ('labels/micrograph493.png', 'f224cd1a86e2b0589782d3584a1e1a4b2509d10211b1d03567b4ede0a7d42f2f',
         None, 'none (no licence upstream)'),
        ('labels/micrograph558.png', '535c015d5e7ab70ca386c2f3c0466f3e31be5585d9170313db3a968efac60b56',
         None, 'none (no licence upstream)'),
        ('labels/micrograph573.png', '5834df8da4f6c62b68f3256a96fa5cb012d7ecce4e3ad41bdb1dfd98b1a28ad4',
         None, 'none (no licence upstream)'),
        ('metadata.csv', '7c41a79369afe58311866e140acf64be450b5282c4d170959683e9bee6ed8258',
         None, 'none (no licence upstream)'),
    ),
}
