"""M5Stack Core (Basic): 320x240 ILI9342C IPS panel on SPI, three front buttons, a speaker.

The three buttons make a 3-point scale: A (left) very unhappy, B neutral, C (right) happy.
"""

from micropython import const

NAME = "m5stack-core"
DISPLAY = "ili9341"
WIDTH = const(320)
HEIGHT = const(240)
COLOUR = True
SPI_BUS = const(2)  # VSPI: SCK 18 and MOSI 23 are its own pins, so it runs at full speed
SPI_BAUDRATE = const(40_000_000)
SPI_SCK = const(18)
SPI_MOSI = const(23)
LCD_CS = const(14)
LCD_DC = const(27)
LCD_RST = const(33)
LCD_BACKLIGHT = const(32)
LCD_MADCTL = const(0x08)  # native landscape, upright as mounted; BGR subpixels
LCD_INVERT = True  # IPS glass; the earliest Cores had a TN panel that wants no inversion
BAND_ROWS = const(12)  # 320 x 12 x 2 = 7.5 KB of band buffer, 20 bands a screen
# Buttons A, B, C: input-only GPIOs with pull-ups on the board, low while pressed.
BUTTONS = (39, 38, 37)
BUTTON_ACTIVE_LOW = True
LED = None
BUZZER = const(25)  # the speaker, through its amplifier


def make_display():
    """The initialised ILI9342C, on and black, with the backlight on."""
    # The drivers are firmware modules: on the kiosk they sit beside board.py in /lib.
    import ili9341
    from machine import SPI, Pin

    # MISO (19) is the SD card's; the display is only written, so the bus takes no MISO.
    spi = SPI(SPI_BUS, SPI_BAUDRATE, sck=Pin(SPI_SCK), mosi=Pin(SPI_MOSI), miso=None)
    return ili9341.ILI9342C(
        spi,
        Pin(LCD_CS, Pin.OUT, value=1),
        Pin(LCD_DC, Pin.OUT, value=0),
        Pin(LCD_RST, Pin.OUT, value=1),
        WIDTH,
        HEIGHT,
        LCD_MADCTL,
        LCD_INVERT,
        BAND_ROWS,
        Pin(LCD_BACKLIGHT, Pin.OUT, value=0),
    )


def button_pins() -> tuple:
    """The buttons, left to right, as inputs; their pull-ups are on the board."""
    from machine import Pin

    return tuple(Pin(n, Pin.IN) for n in BUTTONS)
